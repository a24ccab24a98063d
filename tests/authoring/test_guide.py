"""The worked example of docs/rule-authoring.md, executed: its files are written, the
fault is started for real, every command is run and the output lines shown must appear
(`...` in an expected line matches anything within that line). The guide cannot rot."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "rule-authoring.md"
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def worked_example() -> tuple[dict[str, str], list[tuple[str, list[str]]]]:
    text = GUIDE.read_text(encoding="utf-8")
    example = text[text.index("## Worked example"):]
    files: dict[str, str] = {}
    commands: list[tuple[str, list[str]]] = []
    for lang, info, body in BLOCK.findall(example):
        m = re.search(r"file=(\S+)", info)
        if m:
            files[m.group(1)] = body
        elif lang == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    commands.append((line[2:], []))
                elif line.strip():
                    commands[-1][1].append(line.strip())
    return files, commands


def _shows(expected: str, output: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return any(re.search(pattern, line) for line in output.splitlines())


def test_the_guide_has_a_worked_example():
    files, commands = worked_example()
    assert {"leak.py", "site-pack/site-thread-leak.yaml",
            "site-pack/tests/site-thread-leak.yaml"} <= set(files)
    names = [c.split()[:3] for c, _ in commands]
    for step in (["sysdiag", "collect"], ["sysdiag", "rules", "new"],
                 ["sysdiag", "rules", "explain"], ["sysdiag", "rules", "test"],
                 ["sysdiag", "rules", "lint"], ["sysdiag", "diagnose"]):
        assert any(n[:len(step)] == step for n in names), step


@pytest.mark.live
@pytest.mark.slow
def test_the_worked_example_runs_as_written(tmp_path):
    files, commands = worked_example()
    leak = tmp_path / "leak.py"
    leak.write_text(files["leak.py"])
    # as the guide runs it: `python3 leak.py` (the process name the rules see is python3)
    python3 = BIN / "python3" if (BIN / "python3").exists() else Path(sys.executable)
    proc = subprocess.Popen([str(python3), str(leak)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "leaking"
        for command, expected in commands:
            argv = shlex.split(command)
            argv[0] = str(BIN / argv[0])
            r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            output = r.stdout + r.stderr
            assert r.returncode in (0, 1), (command, output)
            for line in expected:
                assert _shows(line, output), f"`{command}` did not show {line!r}:\n{output}"
            if argv[1:3] == ["rules", "new"]:
                # the scaffold passed lint and test; now the guide's own files replace it
                for name, body in files.items():
                    if name.startswith("site-pack/"):
                        (tmp_path / name).write_text(body)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
