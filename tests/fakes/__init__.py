"""Local servers that speak the documented protocols of services we cannot run here.

PagerDuty Events v2 (HTTPS), Pingdom 3.1, Sentry envelopes and Sentry's Web API for releases
(HTTPS). Each is a context manager bound to 127.0.0.1 on a free port, served from a thread, with
a list of what it received. Real client libraries talk to them; nothing is monkeypatched.
"""
