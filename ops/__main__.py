"""`python -m ops` is the same as the `ops` command."""

from ops.cli import main

main()
