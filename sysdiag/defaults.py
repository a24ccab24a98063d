"""Defaults shared by the CLI and the pipeline (kept import-light for `--help`)."""

#: hard bound on a whole run, seconds
DEADLINE_S = 30.0
#: minimum score of a finding (exit 1); "likely" in docs/rule-format.md "Labels"
THRESHOLD = 0.5
#: sampling window when neither the playbook nor --window gives one (`collect`)
WINDOW_S = 5.0
