"""Playbooks: for each symptom, which probes to run, the window, the candidate
hypotheses in prior order, and the read-only follow-up commands.

One YAML file per symptom in `playbooks/` (installed as `sysdiag.playbooks`).
Files are validated when loaded; a mistake is a `PlaybookError` naming the file
and line and what to do.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import yaml

#: DESIGN.md's symptom vocabulary, in the order `sysdiag symptoms` lists it
SYMPTOMS = ("high-latency", "packet-loss", "connection-failures", "slow-throughput", "high-cpu",
            "memory-pressure", "oom", "process-hang", "disk-full", "io-latency", "fd-exhaustion",
            "health")

#: Probes that playbooks may name before they exist: reported in coverage as
#: "skipped" ("probe not implemented in this version") instead of failing the load.
#: Remove a name from here when its probe is registered (a test checks both never overlap).
PLANNED_PROBES: dict[str, str] = {
    # network (issue 3)
}

#: placeholders a follow-up command may use; filled from --pid/--iface/... or the evidence
PLACEHOLDERS = ("pid", "iface", "netns", "cgroup")

_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SHELL_SYNTAX = re.compile(r"[|;&<>`$\\]|^~")


# ---- which follow-up commands may run -------------------------------------------

def _any_args(argv: list[str]) -> Optional[str]:
    return None


def _ip_show(argv: list[str]) -> Optional[str]:
    verbs = {"show", "list", "ls", "lst", "get"}
    if not verbs.intersection(argv[1:]):
        return "ip may only run with `show`/`list` (it changes the network otherwise)"
    if {"add", "del", "delete", "change", "replace", "set", "flush", "exec", "-batch", "-b",
            "monitor"}.intersection(argv[1:]):
        return "ip may only show (no add/del/change/set/flush/exec/batch/monitor)"
    return None


def _tc_show(argv: list[str]) -> Optional[str]:
    if "show" not in argv[1:] or {"add", "del", "delete", "change", "replace", "-batch", "-b",
                                  "exec", "monitor"}.intersection(argv[1:]):
        return "tc may only run `... show` (it changes queues otherwise)"
    return None


def _ethtool_read(argv: list[str]) -> Optional[str]:
    # ethtool IF, or one of the read-only query options: -S -i -k -g -c -l -a -P -T
    read_only = {"-S", "-i", "-k", "-g", "-c", "-l", "-a", "-P", "-T",
                 "--statistics", "--driver", "--show-features", "--show-ring",
                 "--show-coalesce", "--show-channels", "--show-pause"}
    options = [a for a in argv[1:] if a.startswith("-")]
    if len(argv) < 2 or any(o not in read_only for o in options) or len(options) > 1:
        return "ethtool may only run `ethtool IF` or one query option (-S -i -k -g -c -l -a -P -T)"
    return None


def _slabtop_once(argv: list[str]) -> Optional[str]:
    if "-o" not in argv and "--once" not in argv:
        return "slabtop needs -o (print once), otherwise it never exits"
    return None


def _top_batch(argv: list[str]) -> Optional[str]:
    if "-b" not in argv or not any(a.startswith("-n") for a in argv):
        return "top needs -b -n 1 (batch, one iteration)"
    return None


#: binaries a follow-up may run, each with a check of its arguments. Only tools that
#: read: no `ss` (can load inet_diag), no `iptables`/`nft`/`conntrack` (load modules),
#: no `df`/`du`/`lsof`/`stat` (hang on a dead NFS or FUSE mount), no `nstat` (writes history).
FOLLOW_UP_BINARIES: dict[str, Callable[[list[str]], Optional[str]]] = {
    "ps": _any_args, "uptime": _any_args, "free": _any_args, "vmstat": _any_args,
    "mpstat": _any_args, "pidstat": _any_args, "iostat": _any_args, "uname": _any_args,
    "nproc": _any_args, "slabtop": _slabtop_once, "top": _top_batch,
    "ip": _ip_show, "tc": _tc_show, "ethtool": _ethtool_read,
}


def follow_up_problem(command: str) -> Optional[str]:
    """Why `command` may not run as a follow-up, or None when it may."""
    try:
        argv = shlex.split(command)
    except ValueError as err:
        return f"cannot split the command: {err}"
    if not argv:
        return "empty command"
    if any(_SHELL_SYNTAX.search(arg) for arg in argv):
        return "shell syntax (| ; & < > ` $ \\ ~) is not allowed: commands run without a shell"
    binary = argv[0]
    check = FOLLOW_UP_BINARIES.get(binary)
    if check is None:
        return (f"{binary!r} is not an allowed follow-up command "
                f"(allowed: {', '.join(sorted(FOLLOW_UP_BINARIES))})")
    for arg in argv:
        try:
            parsed = list(string.Formatter().parse(arg))
        except ValueError as err:
            return f"bad placeholder in {arg!r}: {err}"
        for _, name, spec, conversion in parsed:
            if name is not None and (name not in PLACEHOLDERS or spec or conversion):
                return (f"placeholder {{{name}}} is not allowed here (allowed, without "
                        f"format specs: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
    return check(argv)


# ---- the playbook ------------------------------------------------------------------

class PlaybookError(ValueError):
    """A playbook file that is not valid; the message names the file and line."""


class UnknownSymptom(ValueError):
    """`--symptom` names no playbook."""


@dataclass(frozen=True)
class Playbook:
    symptom: str
    title: str
    window_s: float
    #: probe names, cheap first; empty with `all_probes` (health: every registered and planned)
    probes: tuple[str, ...]
    #: candidate hypotheses in prior order; empty with `all_hypotheses` (health)
    hypotheses: tuple[str, ...]
    all_hypotheses: bool = False
    all_probes: bool = False
    follow_ups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: str = ""
    path: Optional[Path] = None

    def probe_names(self, registered: Iterable[str]) -> list[str]:
        """The probes to run or report: with `all`, every registered one, then the planned."""
        if not self.all_probes:
            return list(self.probes)
        names = list(registered)
        return names + [p for p in PLANNED_PROBES if p not in names]


_FIELDS = {"symptom", "title", "window_s", "probes", "hypotheses", "follow_ups", "notes"}
_REQUIRED = ("symptom", "title", "window_s", "probes", "hypotheses")


def _node_at(root: yaml.Node, path: Iterable[Any]) -> yaml.Node:
    """The YAML node at `path` (mapping keys and list indexes), as deep as it exists.
    A mapping key's own node is returned for a final key, so errors point at it."""
    node = root
    for step in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == step:
                    node = value
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) \
                and step < len(node.value):
            node = node.value[step]
        else:
            return node
    return node


def _key_node(root: yaml.Node, path: list[Any]) -> yaml.Node:
    parent = _node_at(root, path[:-1])
    if isinstance(parent, yaml.MappingNode):
        for key, _ in parent.value:
            if key.value == path[-1]:
                return key
    return _node_at(root, path)


class _Checker:
    def __init__(self, where: str, root: yaml.Node):
        self.where, self.root = where, root

    def fail(self, path: list[Any], message: str, key: bool = False) -> PlaybookError:
        node = _key_node(self.root, path) if key else _node_at(self.root, path)
        line = node.start_mark.line + 1
        return PlaybookError(f"{self.where}:{line}: {message}")


def parse_playbook(text: str, where: str, known_probes: Iterable[str]) -> Playbook:
    """Validate the text of a playbook. `known_probes`: the registered probe names."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise PlaybookError(f"{where}{line}: not valid YAML: {getattr(err, 'problem', err)}") \
            from err
    if root is None or not isinstance(data, dict):
        raise PlaybookError(f"{where}:1: a playbook is a mapping with the keys "
                            f"{', '.join(_REQUIRED)}")
    check = _Checker(where, root)
    for key in data:
        if key not in _FIELDS:
            raise check.fail([key], f"unknown key {key!r} (allowed: {', '.join(sorted(_FIELDS))})",
                             key=True)
    for key in _REQUIRED:
        if key not in data:
            raise PlaybookError(f"{where}:1: missing key {key!r}")

    symptom = data["symptom"]
    if not isinstance(symptom, str) or not _KEBAB.match(symptom):
        raise check.fail(["symptom"], "symptom must be a kebab-case name")
    stem = Path(where).stem
    if where.endswith(".yaml") and stem != symptom:
        raise check.fail(["symptom"], f"symptom {symptom!r} does not match the file name "
                                      f"{stem}.yaml; rename one of them")
    title = data["title"]
    if not isinstance(title, str) or not title.strip():
        raise check.fail(["title"], "title must be a non-empty string")
    window = data["window_s"]
    if isinstance(window, bool) or not isinstance(window, (int, float)) \
            or not 0 < window <= 300:
        raise check.fail(["window_s"], "window_s must be a number of seconds in (0, 300]")

    all_probes = data["probes"] == "all"
    probes = () if all_probes else _probes(data["probes"], check, set(known_probes))
    hypotheses, all_hyps = _hypotheses(data["hypotheses"], check)
    follow_ups = _follow_ups(data.get("follow_ups") or {}, check, hypotheses, all_hyps)
    notes = data.get("notes") or ""
    if not isinstance(notes, str):
        raise check.fail(["notes"], "notes must be a string")
    return Playbook(symptom=symptom, title=title.strip(), window_s=float(window),
                    probes=probes, hypotheses=hypotheses, all_hypotheses=all_hyps,
                    all_probes=all_probes,
                    follow_ups=follow_ups, notes=" ".join(notes.split()),
                    path=Path(where))


def _probes(value: Any, check: _Checker, known: set[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise check.fail(["probes"], "probes must be a non-empty list of probe names, or `all`")
    seen: list[str] = []
    for index, name in enumerate(value):
        if not isinstance(name, str):
            raise check.fail(["probes", index], "a probe name must be a string")
        if name in seen:
            raise check.fail(["probes", index], f"probe {name!r} is listed twice")
        if name not in known and name not in PLANNED_PROBES:
            raise check.fail(["probes", index],
                             f"unknown probe {name!r} (registered: {', '.join(sorted(known))}; "
                             f"planned: {', '.join(sorted(PLANNED_PROBES))}); "
                             "`sysdiag probes` lists them")
        seen.append(name)
    return tuple(seen)


def _hypotheses(value: Any, check: _Checker) -> tuple[tuple[str, ...], bool]:
    if value == "all":
        return (), True
    if not isinstance(value, list) or not value:
        raise check.fail(["hypotheses"], "hypotheses must be a non-empty list of hypothesis ids "
                                         "in prior order, or `all`")
    seen: list[str] = []
    for index, hid in enumerate(value):
        if not isinstance(hid, str) or not _KEBAB.match(hid):
            raise check.fail(["hypotheses", index],
                             f"{hid!r} is not a kebab-case hypothesis id")
        if hid in seen:
            raise check.fail(["hypotheses", index], f"hypothesis {hid!r} is listed twice")
        seen.append(hid)
    return tuple(seen), False


def _follow_ups(value: Any, check: _Checker, hypotheses: tuple[str, ...],
                all_hyps: bool) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise check.fail(["follow_ups"], "follow_ups must map hypothesis ids to command lists")
    out: dict[str, tuple[str, ...]] = {}
    for hid, commands in value.items():
        if not all_hyps and hid not in hypotheses:
            raise check.fail(["follow_ups", hid], f"follow-ups for {hid!r}, which is not in "
                                                  "this playbook's hypotheses", key=True)
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise check.fail(["follow_ups", hid], "follow-ups are a list of command strings")
        for index, command in enumerate(commands):
            problem = follow_up_problem(command)
            if problem:
                raise check.fail(["follow_ups", hid, index], f"follow-up {command!r}: {problem}")
        out[hid] = tuple(commands)
    return out


# ---- finding and loading -----------------------------------------------------------

def playbook_dir() -> Path:
    return Path(str(resources.files("sysdiag.playbooks")))


def available_symptoms(directory: Optional[Path] = None) -> list[str]:
    """Symptoms with a playbook file, in DESIGN.md order (others after, sorted)."""
    names = {p.stem for p in (directory or playbook_dir()).glob("*.yaml")}
    order = {name: i for i, name in enumerate(SYMPTOMS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def _registered_probes() -> set[str]:
    from sysdiag.probes.registry import all_probes

    return set(all_probes())


def load_playbook(symptom: str, known_probes: Optional[Iterable[str]] = None,
                  directory: Optional[Path] = None) -> Playbook:
    """The playbook for `symptom`. Raises UnknownSymptom or PlaybookError.
    `health` gets the follow-ups of every other playbook."""
    directory = directory or playbook_dir()
    known = set(known_probes) if known_probes is not None else _registered_probes()
    symptoms = available_symptoms(directory)
    if not _KEBAB.match(symptom or "") or symptom not in symptoms:
        raise UnknownSymptom(f"unknown symptom {symptom!r}; known symptoms: "
                             f"{', '.join(symptoms)} (`sysdiag symptoms` describes them)")
    playbook = _load_file(directory / f"{symptom}.yaml", known)
    if playbook.all_hypotheses:
        merged: dict[str, tuple[str, ...]] = {}
        for other in symptoms:
            if other != symptom:
                for hid, cmds in _load_file(directory / f"{other}.yaml", known).follow_ups.items():
                    merged.setdefault(hid, cmds)
        merged.update(playbook.follow_ups)
        playbook = dataclasses.replace(playbook, follow_ups=merged)
    return playbook


def _load_file(path: Path, known: set[str]) -> Playbook:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PlaybookError(f"{path}: cannot read: {err.strerror or err}") from err
    return parse_playbook(text, str(path), known)


def load_all(known_probes: Optional[Iterable[str]] = None,
             directory: Optional[Path] = None) -> dict[str, Playbook]:
    known = set(known_probes) if known_probes is not None else _registered_probes()
    return {s: load_playbook(s, known, directory) for s in available_symptoms(directory)}

