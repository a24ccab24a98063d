"""One module per `sysdiag` command; cli.py only wires them together."""
