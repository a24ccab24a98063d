"""Rule authoring: what an expert needs to write, test, explain and publish rules
without reading the engine (docs/rule-authoring.md).

    cases.py     the rule test file format (YAML cases) and its parser
    runner.py    runs the cases against a rule base; failures with readable diffs
    coverage.py  which rules and which `or` branches the cases exercised
    junit.py     JUnit XML for CI
    lint.py      every problem of a rule pack, with file:line:column and a hint
    explain.py   why a hypothesis fired (derivation with values) or why not
    catalog.py   the markdown catalog of the rules, grouped by symptom
    scaffold.py  `sysdiag rules new ID`: a rule file and its test file that pass
"""
