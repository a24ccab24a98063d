"""Print the accuracy table of an end-to-end run (tests/e2e, `make accuracy`).

Reads the JSON lines the `accuracy` fixture appended to $SYSDIAG_ACCURACY_LOG (or the file
given as the argument): one row per scenario with the expected hypothesis, the top 3 the
tool ranked, and whether the expected one was first / in the top 3 (and named the faulty
object). Prints a table and the top-1 and top-3 rates; `--markdown` for a ticket or note.

    python bench/accuracy.py /tmp/accuracy.jsonl [--markdown]

Exit 0 when the table was printed, 2 when the log is missing, empty or malformed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

FIELDS = ("scenario", "symptom", "expected", "top3", "top1_ok", "top3_ok", "seconds")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of the log; a repeated scenario keeps its last row (a re-run)."""
    rows: dict[str, dict[str, Any]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: not JSON ({err}); delete the file and re-run "
                             "`make accuracy`") from err
        missing = [f for f in FIELDS if f not in row]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing {', '.join(missing)} "
                             "(written by tests/e2e/harness.py AccuracyRecorder)")
        rows[row["scenario"]] = row
    return list(rows.values())


def rates(rows: list[dict[str, Any]]) -> tuple[float, float]:
    n = len(rows)
    return (sum(r["top1_ok"] for r in rows) / n, sum(r["top3_ok"] for r in rows) / n)


def table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    header = ["scenario", "symptom", "expected", "top 3", "top-1", "top-3", "s"]
    body = [[r["scenario"], r["symptom"] or "", r["expected"], ", ".join(r["top3"]) or "-",
             "yes" if r["top1_ok"] else "NO", "yes" if r["top3_ok"] else "NO",
             "" if r["seconds"] is None else f"{r['seconds']:.1f}"] for r in rows]
    top1, top3 = rates(rows)
    footer = (f"{len(rows)} scenarios: top-1 {top1:.0%} "
              f"({sum(r['top1_ok'] for r in rows)}/{len(rows)}), "
              f"top-3 {top3:.0%} ({sum(r['top3_ok'] for r in rows)}/{len(rows)})")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines + ["", footer])
    widths = [max(len(c) for c in col) for col in zip(header, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*cells) for cells in body]
    return "\n".join(lines + ["", footer])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", nargs="?", default=os.environ.get("SYSDIAG_ACCURACY_LOG"),
                        help="JSON-lines file (default: $SYSDIAG_ACCURACY_LOG)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    if not args.log:
        print("accuracy: no log given; pass a file or set SYSDIAG_ACCURACY_LOG", file=sys.stderr)
        return 2
    path = Path(args.log)
    try:
        rows = read_rows(path)
    except FileNotFoundError:
        print(f"accuracy: {path} does not exist; run `make accuracy` (as root) first",
              file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"accuracy: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"accuracy: {path} has no scenarios (were the e2e tests all skipped? "
              "they need root)", file=sys.stderr)
        return 2
    rows.sort(key=lambda r: (r["symptom"] or "", r["scenario"]))
    print(table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
