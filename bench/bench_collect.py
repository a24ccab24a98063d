"""One full `sysdiag collect` next to one prometheus-node-exporter scrape (issue 3's budget).

    .venv/bin/python bench/bench_collect.py [--repeat 3] [--processes 5000]
                                            [--interfaces 200] [--profile]

Needs root (network namespaces) and the Debian package prometheus-node-exporter. For each
scenario it measures
- sysdiag: `sysdiag collect --window 1 --no-ebpf` as a child; CPU seconds (user + system,
  its measuring children included) and peak RSS from wait4(), wall time around it;
- node_exporter: started here on 127.0.0.1 with a free port and its default collectors,
  warmed up with one scrape, then scraped with curl; its CPU is the growth of utime +
  stime in /proc/PID/stat over the scrapes (10 ms ticks, so averaged over 10 scrapes).
Scenarios: the host as it is; with 2,500 and 5,000 extra sleeping processes (children
of this script); and in a network namespace with 0, 100 and 200 extra interfaces (veth
pairs), where sysdiag runs with --netns and node_exporter under `ip netns exec`.
Everything started is stopped in `finally`: processes killed and reaped, namespace deleted.
Budget: collection CPU <= 2x the scrape, <= 100 MB RSS, growth linear. --profile adds
where sysdiag's time goes: start-up and imports, each probe in turn (CPU of its samples
and facts, run in the main thread), the snapshot, and cProfile's top functions.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

VENV_BIN = Path(sys.executable).parent
SYSDIAG = str(VENV_BIN / "sysdiag")
EXPORTER = "prometheus-node-exporter"
NETNS = "sysdiag-bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCRAPES = 10


@dataclass
class Run:
    cpu_s: float
    wall_s: float
    rss_mb: Optional[float] = None


def median_run(runs: list[Run]) -> Run:
    rss = [r.rss_mb for r in runs if r.rss_mb is not None]
    return Run(cpu_s=statistics.median(r.cpu_s for r in runs),
               wall_s=statistics.median(r.wall_s for r in runs),
               rss_mb=max(rss) if rss else None)


# ---- sysdiag ------------------------------------------------------------------------

def no_ebpf_flag() -> list[str]:
    """--no-ebpf where this version has it (tracing probes are not part of the budget)."""
    help_text = subprocess.run([SYSDIAG, "collect", "--help"], capture_output=True,
                               text=True, timeout=30).stdout
    return ["--no-ebpf"] if "--no-ebpf" in help_text else []


#: the console script's program, plus: write this process's own VmHWM at exit. wait4's
#: ru_maxrss is no good here: Linux keeps the pre-exec high-water mark, so a child forked
#: from a big parent (this script after --profile) would inherit the parent's size.
RUN_AND_REPORT_HWM = """\
import atexit, os, sys
def report():
    with open("/proc/self/status") as status, open(os.environ["BENCH_HWM"], "w") as out:
        out.write("".join(line for line in status if line.startswith("VmHWM:")))
atexit.register(report)
from sysdiag.cli import main
sys.argv[0] = "sysdiag"
main(sys.argv[1:])
"""


def run_sysdiag(extra: list[str], out_dir: str) -> tuple[Run, dict[str, float]]:
    """One collect: its Run and each probe's busy seconds (from the snapshot's coverage)."""
    snap, hwm = f"{out_dir}/snap.json", f"{out_dir}/hwm"
    argv = [sys.executable, "-c", RUN_AND_REPORT_HWM, "collect", "--window", "1", *extra,
            "-o", snap]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "BENCH_HWM": hwm})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    errors = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"sysdiag collect failed ({proc.returncode}): {errors[-500:]}")
    rss_kb = int(Path(hwm).read_text().split()[1])
    busy = {c["probe"]: c["duration_s"] for c in json.loads(Path(snap).read_text())["coverage"]}
    return Run(cpu_s=usage.ru_utime + usage.ru_stime, wall_s=wall, rss_mb=rss_kb / 1024), busy


# ---- node_exporter ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


class Exporter:
    """prometheus-node-exporter as our child, optionally inside a network namespace."""

    def __init__(self, netns: Optional[str] = None):
        self.port = free_port()
        self.netns = netns
        prefix = ["ip", "netns", "exec", netns] if netns else []
        # `ip netns exec` execs the command in place: the child's pid is the exporter's
        self.proc = subprocess.Popen(
            [*prefix, EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 15
        while not self._scrape_ok():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"{EXPORTER} did not answer on port {self.port}")
            time.sleep(0.1)

    def _curl(self) -> subprocess.CompletedProcess:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return subprocess.run([*prefix, "curl", "-sf", "-o", "/dev/null",
                               f"http://127.0.0.1:{self.port}/metrics"], timeout=30)

    def _scrape_ok(self) -> bool:
        return self._curl().returncode == 0

    def measure(self) -> Run:
        """CPU and wall per scrape, averaged over SCRAPES scrapes."""
        walls = []
        cpu_before = proc_cpu_s(self.proc.pid)
        for _ in range(SCRAPES):
            started = time.monotonic()
            if self._curl().returncode != 0:
                raise RuntimeError(f"{EXPORTER} scrape failed")
            walls.append(time.monotonic() - started)
        cpu = (proc_cpu_s(self.proc.pid) - cpu_before) / SCRAPES
        hwm = [line for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
               if line.startswith("VmHWM:")]
        rss = int(hwm[0].split()[1]) / 1024 if hwm else None
        # curl's own start-up is in the wall time; it is the same for every scenario
        return Run(cpu_s=cpu, wall_s=statistics.median(walls), rss_mb=rss)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ---- load -------------------------------------------------------------------------

class Sleepers:
    """Extra sleeping processes, children of this script."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def grow_to(self, count: int) -> None:
        while len(self.procs) < count:
            self.procs.append(subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL))

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(timeout=30)
        self.procs.clear()


class Namespace:
    """A network namespace with `veth` pairs inside it (both ends), deleted at the end."""

    def __init__(self, name: str = NETNS):
        self.name = name
        self.pairs = 0
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)

    def grow_to(self, interfaces: int) -> None:
        lines = []
        while (self.pairs + len(lines)) * 2 < interfaces:
            n = self.pairs + len(lines)
            lines.append(f"link add sdb{n}a type veth peer name sdb{n}b\n")
        if not lines:
            return
        with tempfile.NamedTemporaryFile("w", suffix=".ip") as batch:
            batch.writelines(lines)
            batch.writelines(f"link set sdb{n}{end} up\n"
                             for n in range(self.pairs, self.pairs + len(lines))
                             for end in "ab")
            batch.flush()
            subprocess.run(["ip", "-n", self.name, "-batch", batch.name], check=True,
                           timeout=120)
        self.pairs += len(lines)

    def count(self) -> int:
        out = subprocess.run(["ip", "-n", self.name, "-o", "link", "show"], check=True,
                             capture_output=True, text=True, timeout=30).stdout
        return len(out.splitlines())

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], timeout=60)


# ---- profile ----------------------------------------------------------------------

#: a full collect in-process with every thread profiled (cProfile sees one thread each)
PROFILE_COLLECT = """\
import cProfile, pstats, sys, threading, time
profiles = []
def start(frame, event, arg):
    profile = cProfile.Profile()
    profiles.append(profile)
    sys.setprofile(None)
    profile.enable()
threading.setprofile(start)
main = cProfile.Profile()
main.enable()
from sysdiag.cli import main as cli
try:
    cli(sys.argv[1:])
except SystemExit:
    pass
main.disable()
stats = pstats.Stats(main)
for profile in profiles:
    profile.disable()
    stats.add(profile)
stats.sort_stats("tottime").print_stats(18)
"""


def profile(extra: list[str], out_dir: str) -> None:
    """Where sysdiag's CPU goes: start-up and imports, then cProfile's top functions over
    every thread of one full collect (profiling slows it down ~2x; ratios hold)."""
    bare = subprocess.Popen([sys.executable, "-c", "pass"])
    _, _, bare_usage = os.wait4(bare.pid, 0)
    startup = subprocess.Popen([sys.executable, "-c", "import sysdiag.cli, sysdiag.pipeline; "
                                "from sysdiag.probes.registry import all_probes; all_probes()"])
    _, _, usage = os.wait4(startup.pid, 0)
    print(f"  interpreter start-up {bare_usage.ru_utime + bare_usage.ru_stime:.3f} s CPU; "
          f"with the imports of the CLI, the pipeline and every probe "
          f"{usage.ru_utime + usage.ru_stime:.3f} s CPU")
    out = subprocess.run([sys.executable, "-c", PROFILE_COLLECT, "collect", "--window", "1",
                          *extra, "-o", f"{out_dir}/profiled.json"], capture_output=True,
                         text=True, timeout=300).stdout
    lines = out.splitlines()
    first = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    print("\n".join("    " + line[:150] for line in lines[max(0, first - 4):first + 19]))


# ---- main -------------------------------------------------------------------------

def table(rows: list[tuple[str, Run, Run]]) -> None:
    print(f"\n{'scenario':34} {'sysdiag CPU s':>13} {'wall s':>7} {'RSS MB':>7} | "
          f"{'scrape CPU s':>12} {'wall s':>7} | {'CPU ratio':>9}")
    for label, mine, theirs in rows:
        ratio = mine.cpu_s / theirs.cpu_s if theirs.cpu_s > 0 else float("inf")
        print(f"{label:34} {mine.cpu_s:13.3f} {mine.wall_s:7.2f} {mine.rss_mb or 0:7.1f} | "
              f"{theirs.cpu_s:12.4f} {theirs.wall_s:7.3f} | {ratio:8.1f}x")


def busiest(busy: dict[str, dict[str, float]], top: int = 8) -> None:
    """Each probe's own busy time (coverage duration_s, median) per scenario."""
    labels = list(busy)
    names = sorted({n for b in busy.values() for n in b},
                   key=lambda n: -max(b.get(n, 0.0) for b in busy.values()))[:top]
    print("\nbusiest probes, busy seconds per scenario (their threads overlap):")
    print(f"{'probe':16} " + " ".join(f"{label[:14]:>14}" for label in labels))
    for name in names:
        print(f"{name:16} " + " ".join(f"{busy[label].get(name, 0.0):14.3f}"
                                       for label in labels))


def growth(label: str, points: list[tuple[int, Run]]) -> None:
    """CPU per added unit between consecutive points: about equal when growth is linear."""
    steps = [f"{na}->{nb}: {(rb.cpu_s - ra.cpu_s) / (nb - na) * 1e3:.3f}"
             for (na, ra), (nb, rb) in zip(points, points[1:])]
    rss = " -> ".join(f"{run.rss_mb or 0:.0f}" for _, run in points)
    print(f"{label}: CPU ms per unit {'; '.join(steps)}. RSS MB {rss}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="sysdiag runs per scenario")
    parser.add_argument("--processes", type=int, default=5000)
    parser.add_argument("--interfaces", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_collect: needs root (network namespaces, every probe)")
    for tool in (EXPORTER, "curl", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_collect: {tool} not found (apt-get install {tool})")
    extra = no_ebpf_flag()
    out_dir = tempfile.mkdtemp(prefix="sysdiag-bench-")
    rows: list[tuple[str, Run, Run]] = []
    sleepers, namespace = Sleepers(), None
    proc_points: list[tuple[int, Run]] = []
    iface_points: list[tuple[int, Run]] = []
    busy: dict[str, dict[str, float]] = {}

    def scenario(label: str, sysdiag_args: list[str], netns: Optional[str]) -> Run:
        exporter = Exporter(netns)
        try:
            theirs = exporter.measure()
        finally:
            exporter.stop()
        results = [run_sysdiag([*extra, *sysdiag_args], out_dir) for _ in range(args.repeat)]
        mine = median_run([run for run, _ in results])
        busy[label] = {name: statistics.median(b.get(name, 0.0) for _, b in results)
                       for name in results[0][1]}
        rows.append((label, mine, theirs))
        print(f"  {label}: sysdiag {mine.cpu_s:.3f} s CPU, {mine.rss_mb:.0f} MB; "
              f"scrape {theirs.cpu_s:.4f} s CPU", flush=True)
        return mine

    try:
        base = sum(name.isdigit() for name in os.listdir("/proc"))
        print(f"host: {os.cpu_count()} CPUs, {base} processes; sysdiag runs: median of "
              f"{args.repeat}; scrapes: mean of {SCRAPES}", flush=True)
        for count in (0, args.processes // 4, args.processes // 2, 3 * args.processes // 4,
                  args.processes):
            sleepers.grow_to(count)
            run = scenario(f"host +{count} processes", [], None)
            proc_points.append((count, run))
        if args.profile:
            print(f"\nprofile with {args.processes} extra processes:")
            profile(extra, out_dir)
        sleepers.stop()
        namespace = Namespace()
        for count in (0, args.interfaces // 4, args.interfaces // 2, 3 * args.interfaces // 4,
                      args.interfaces):
            namespace.grow_to(count)
            seen = namespace.count()
            run = scenario(f"netns, {seen} interfaces", ["--netns", namespace.name],
                           namespace.name)
            iface_points.append((count, run))
        if args.profile:
            print(f"\nprofile in the namespace with {args.interfaces} extra interfaces:")
            profile([*extra, "--netns", namespace.name], out_dir)
    finally:
        sleepers.stop()
        if namespace is not None:
            namespace.delete()
        shutil.rmtree(out_dir, ignore_errors=True)

    table(rows)
    busiest(busy)
    print()
    growth("extra processes", proc_points)
    growth("extra interfaces", iface_points)
    worst = max(m.cpu_s / t.cpu_s for _, m, t in rows if t.cpu_s > 0)
    peak = max(m.rss_mb or 0 for _, m, _ in rows)
    print(f"budget: CPU <= 2x the scrape: worst {worst:.1f}x -> "
          f"{'within' if worst <= 2 else 'OVER'}; RSS <= 100 MB: peak {peak:.0f} MB -> "
          f"{'within' if peak <= 100 else 'OVER'}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    main()
