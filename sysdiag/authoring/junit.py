"""JUnit XML for `sysdiag rules test --junit FILE` (one testsuite per test file)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .runner import Run, format_failure


def write_junit(run: Run, path: Path) -> None:
    root = ET.Element("testsuites", name="sysdiag rules test")
    by_file: dict[str, list] = {}
    for res in run.results:
        by_file.setdefault(res.case.file, []).append(res)
    for problem in run.problems:
        by_file.setdefault(problem.file, [])
    for file, results in by_file.items():
        problems = [p for p in run.problems if p.file == file]
        suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(results) + len(problems)),
                              failures=str(sum(1 for r in results if r.failures and not r.error)),
                              errors=str(sum(1 for r in results if r.error) + len(problems)))
        for p in problems:
            case = ET.SubElement(suite, "testcase", classname=file, name=f"line {p.line}")
            ET.SubElement(case, "error", message=p.message).text = str(p)
        for res in results:
            case = ET.SubElement(suite, "testcase", classname=file, name=res.case.name,
                                 time=f"{res.duration_s:.4f}")
            case.set("line", str(res.case.line))
            if res.error:
                ET.SubElement(case, "error", message=res.error).text = format_failure(res)
            elif res.failures:
                ET.SubElement(case, "failure", message=res.failures[0].splitlines()[0]
                              ).text = format_failure(res)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
