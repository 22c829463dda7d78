"""The lab: the Pulumi plan of an AWS-shaped stack realised as real hosts on this machine.

Apart from the product: nothing in roles/, ops/ or infra/ imports it or asks whether it runs in
the lab. The AWS target is pointed at the lab's stand-ins through the standard AWS settings.
"""
