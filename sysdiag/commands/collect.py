"""`sysdiag collect -o snap.json`: save what the probes see, to diagnose later."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from itertools import chain
from pathlib import Path
from typing import Annotated, Iterable

import typer

from sysdiag.defaults import DEADLINE_S

from .common import (EXIT_INCOMPLETE, CgroupOpt, DeadlineOpt, EbpfOpt, IfaceOpt, NetnsOpt,
                     PidOpt, ProcRootOpt, SysRootOpt, UserError, WindowOpt, make_scope,
                     warn, write_stdout)


def collect_command(
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="FILE", help="Where to write the snapshot ('-': stdout).")],
    window: WindowOpt = None,
    deadline: DeadlineOpt = DEADLINE_S,
    proc_root: ProcRootOpt = None,
    sys_root: SysRootOpt = None,
    netns: NetnsOpt = None,
    cgroup: CgroupOpt = None,
    pid: PidOpt = None,
    iface: IfaceOpt = None,
    ebpf: EbpfOpt = None,
) -> None:
    """Run every probe and save the facts as a snapshot (`diagnose --from FILE` reads it).

    Exit 0 when saved, 3 when saved but incomplete (deadline hit or a probe timed out).
    """
    import time

    from sysdiag.pipeline import Options, collect, load_rules
    from sysdiag.tracing import second_phase

    started = time.monotonic()
    options = Options(window_s=window, deadline_s=deadline, proc_root=proc_root,
                      sys_root=sys_root, scope=make_scope(pid, cgroup, netns, iface), ebpf=ebpf)
    collected = collect(options, started=started)
    if collected.snapshot.live and ebpf is not True:
        rulebase = None  # --no-ebpf: only records the tracers as skipped, needs no rules
        if ebpf is None:
            # auto: trace what the hypotheses of every symptom (as for `health`) would need
            rulebase, _ = load_rules(dataclasses.replace(options, tolerate_rule_errors=True))
        snapshot, late, _ = second_phase(collected.snapshot, rulebase, None, options, started,
                                         record_all=True)
        collected = dataclasses.replace(collected, snapshot=snapshot,
                                        deadline_hit=collected.deadline_hit or late)
    if str(output) == "-":
        write_stdout(collected.snapshot.to_json() + "\n")
    else:
        # written fact by fact: the whole text of a big snapshot is never held at once
        _write_atomically(output, chain(collected.snapshot.json_chunks(), ["\n"]))
    timed_out = [o.probe for o in collected.snapshot.coverage if o.status == "timed_out"]
    ok = sum(1 for o in collected.snapshot.coverage if o.status == "ok")
    if str(output) != "-":
        warn(f"saved {len(collected.snapshot.facts)} facts from {ok} probes to {output}")
    if collected.deadline_hit or timed_out:
        why = "the deadline was reached" if collected.deadline_hit else \
            f"probes timed out: {', '.join(timed_out)}"
        warn(f"incomplete snapshot: {why}")
        raise typer.Exit(EXIT_INCOMPLETE)


def _write_atomically(path: Path, chunks: Iterable[str]) -> None:
    """Write next to the target and rename, so a crash never leaves half a snapshot."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UserError(f"-o {path}: directory {directory} does not exist")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(chunks)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise UserError(f"-o {path}: cannot write: {err.strerror or err}") from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
