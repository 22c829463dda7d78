"""The one exit-code table of every `ops` command (README: "Exit codes")."""

OK = 0
FAILED = 1  # a step failed, a service is down, a policy is violated
BAD_INPUT = 2  # bad arguments, bad stack config, missing secret, unknown host, a held lock
CHANGES_PENDING = 3  # `converge --check --detailed-exitcode`: changes would be made
