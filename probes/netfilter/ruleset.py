"""A summary of the netfilter ruleset, read without loading any kernel module.

Backends first, from files that never load anything: /proc/modules (what is loaded),
/proc/net/{ip,ip6}_tables_names (iptables-legacy tables in use; they exist only while
ip_tables / ip6_tables is loaded), /proc/net/stat/nf_conntrack, /proc/sys/net/bridge.

nftables rules are dumped over NETLINK_NETFILTER (NFT_MSG_GETTABLE, GETCHAIN, GETRULE,
every family), decoded with struct as a stream, and only when nfnetlink and nf_tables
are already loaded or built in: opening that socket loads nfnetlink, the first nf_tables
message loads nf_tables (netfilter/modules.py). nfnetlink answers only with
CAP_NET_ADMIN. Rules whose verdict is drop (an `immediate` drop) or reject (a `reject`
expression) become NetfilterRule facts with their counter, at most MAX_RULES of them,
the busiest first.

iptables-legacy tables are read with the IPT_SO_GET_ENTRIES socket option (legacy.py),
only those /proc/net/ip{,6}_tables_names lists (asking for another would load its
module), never with `iptables`/`iptables-save` (they can load modules). Drop and reject
rules of both backends, and DROP policies of legacy built-in chains, become
NetfilterRule facts (KNOWLEDGE.md §5.G "nf-rule-drop").
"""
from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Optional

from sysdiag.facts import Fact, Netfilter, NetfilterRule

from ..base import Probe, ProbeContext
from ..netlink.nldump import (NETLINK_NETFILTER, DumpInterrupted, attr_map, attr_str, dump,
                              iter_attrs, open_netlink)
from ..parse import ParseError
from ..registry import register_probe
from .legacy import LegacyRule, LegacyTable, read_table
from .modules import KernelModules, read_kernel_modules

NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE = 1, 4, 7
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, NFTA_CHAIN_HOOK, NFTA_CHAIN_POLICY = 1, 3, 4, 5
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE, NFTA_RULE_EXPRESSIONS = 1, 2, 3, 4
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 2
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA = 1, 2
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE = 1
NFTA_CT_KEY = 2
NFTA_BITWISE_MASK = 4
NFT_CT_STATE = 0
NF_CT_STATE_INVALID_BIT = 1
NF_DROP = 0
NFT_REG_VERDICT = 0
#: nfgen_family -> the family name nft prints
NFPROTO = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
MAX_RULES = 100
DUMP_RETRIES = 3
_NFGEN = struct.Struct("=BBH")  # nfgen_family version res_id



@dataclass(frozen=True)
class NftRule:
    family: str
    table: str
    chain: str
    handle: int
    verdict: Optional[str]  # "drop" | "reject" | None
    packets: Optional[int]
    bytes: Optional[int]
    ct_invalid: bool


@dataclass
class NftRuleset:
    tables: int = 0
    chains: int = 0
    rules: int = 0
    drop_policies: int = 0
    drop_rules: list[NftRule] = field(default_factory=list)


@dataclass
class NetfilterSample:
    modules: KernelModules
    backends: dict[str, Optional[bool]]
    legacy_v4: Optional[str]
    legacy_v6: Optional[str]
    nft: Optional[NftRuleset]
    reason: Optional[str]  # why nftables rules were not read
    legacy: list[LegacyTable] = field(default_factory=list)
    legacy_reason: Optional[str] = None  # why some iptables-legacy tables were not read


def _be32(payload: Optional[bytes]) -> Optional[int]:
    return None if payload is None or len(payload) < 4 else struct.unpack_from(">i", payload)[0]


def _be64(payload: Optional[bytes]) -> Optional[int]:
    return None if payload is None or len(payload) < 8 else struct.unpack_from(">Q", payload)[0]


def expressions(payload: bytes) -> list[tuple[str, dict[int, bytes]]]:
    """(name, data attributes) of each expression in NFTA_RULE_EXPRESSIONS."""
    out = []
    for kind, elem in iter_attrs(payload):
        if kind != NFTA_LIST_ELEM:
            continue
        attrs = attr_map(elem)
        name = attr_str(attrs.get(NFTA_EXPR_NAME)) or "?"
        out.append((name, attr_map(attrs.get(NFTA_EXPR_DATA, b""))))
    return out


def rule_from_msg(body: bytes) -> NftRule:
    """Decode one NFT_MSG_NEWRULE payload (nfgenmsg + attributes)."""
    if len(body) < _NFGEN.size:
        raise ParseError("netlink NFT_MSG_GETRULE", "message shorter than struct nfgenmsg")
    family = NFPROTO.get(body[0], str(body[0]))
    attrs = attr_map(body, _NFGEN.size)
    verdict, packets, nbytes, ct_state, invalid_mask = None, None, None, False, False
    for name, data in expressions(attrs.get(NFTA_RULE_EXPRESSIONS, b"")):
        if name == "counter":
            packets = _be64(data.get(NFTA_COUNTER_PACKETS))
            nbytes = _be64(data.get(NFTA_COUNTER_BYTES))
        elif name == "immediate" and _be32(data.get(NFTA_IMMEDIATE_DREG)) == NFT_REG_VERDICT:
            code = _be32(attr_map(attr_map(data.get(NFTA_IMMEDIATE_DATA, b""))
                                  .get(NFTA_DATA_VERDICT, b"")).get(NFTA_VERDICT_CODE))
            if code == NF_DROP:
                verdict = "drop"
        elif name == "reject":
            verdict = "reject"
        elif name == "ct" and _be32(data.get(NFTA_CT_KEY)) == NFT_CT_STATE:
            ct_state = True
        elif name == "bitwise" and ct_state:
            mask = attr_map(data.get(NFTA_BITWISE_MASK, b"")).get(NFTA_DATA_VALUE)
            if mask and len(mask) >= 4 and struct.unpack_from("=I", mask)[0] & \
                    NF_CT_STATE_INVALID_BIT:
                invalid_mask = True
    return NftRule(family=family, table=attr_str(attrs.get(NFTA_RULE_TABLE)) or "?",
                   chain=attr_str(attrs.get(NFTA_RULE_CHAIN)) or "?",
                   handle=_be64(attrs.get(NFTA_RULE_HANDLE)) or 0, verdict=verdict,
                   packets=packets, bytes=nbytes, ct_invalid=ct_state and invalid_mask)


def chain_policy_drop(body: bytes) -> bool:
    """A base chain (it has a hook) whose policy is drop."""
    attrs = attr_map(body, _NFGEN.size)
    return NFTA_CHAIN_HOOK in attrs and _be32(attrs.get(NFTA_CHAIN_POLICY)) == NF_DROP


def parse_tables_names(text: Optional[str]) -> Optional[str]:
    """/proc/net/ip_tables_names ("filter\\nnat\\n") as "filter,nat"; None when absent.

    >>> parse_tables_names("nat\\nfilter\\n")
    'filter,nat'
    """
    if text is None:
        return None
    return ",".join(sorted(line.strip() for line in text.splitlines() if line.strip()))


def dump_nftables(sock: socket.socket) -> NftRuleset:
    ruleset = NftRuleset()
    request = _NFGEN.pack(socket.AF_UNSPEC, 0, 0)
    kind = NFNL_SUBSYS_NFTABLES << 8
    for _ in dump(sock, kind | NFT_MSG_GETTABLE, request, seq=1):
        ruleset.tables += 1
    for _, body in dump(sock, kind | NFT_MSG_GETCHAIN, request, seq=2):
        ruleset.chains += 1
        ruleset.drop_policies += chain_policy_drop(body)
    for _, body in dump(sock, kind | NFT_MSG_GETRULE, request, seq=3):
        ruleset.rules += 1
        rule = rule_from_msg(body)
        if rule.verdict is not None:
            ruleset.drop_rules.append(rule)
    return ruleset


def backends(ctx: ProbeContext, modules: KernelModules) -> dict[str, Optional[bool]]:
    """Which netfilter parts are there. Files that exist only while a module is loaded
    answer even where /proc/modules cannot (a kernel without module support)."""
    def there(name: str, path: os.PathLike) -> Optional[bool]:
        if os.path.exists(path):
            return True
        return modules.present(name)

    return {"nf_tables": modules.present("nf_tables"),
            "ip_tables": there("ip_tables", ctx.net("ip_tables_names")),
            "ip6_tables": there("ip6_tables", ctx.net("ip6_tables_names")),
            "conntrack": there("nf_conntrack", ctx.net("stat", "nf_conntrack")),
            "br_netfilter": there("br_netfilter", ctx.proc("sys", "net", "bridge"))}


def _drop_rules(sample: Optional[NetfilterSample]) -> list[tuple[str, NftRule | LegacyRule]]:
    if sample is None:
        return []
    out: list[tuple[str, NftRule | LegacyRule]] = []
    if sample.nft is not None:
        out += [("nftables", r) for r in sample.nft.drop_rules]
    out += [("iptables-legacy", r) for t in sample.legacy for r in t.drop_rules]
    return out


def _key(backend: str, rule: NftRule | LegacyRule) -> tuple:
    handle = rule.handle if isinstance(rule, NftRule) else rule.number
    return (backend, rule.family, rule.table, rule.chain, handle)


def rule_facts(first: Optional[NetfilterSample], last: NetfilterSample,
               elapsed_s: Optional[float]) -> tuple[list[NetfilterRule], int]:
    """The busiest drop/reject rules of both backends as facts, and how many were left out."""
    before = {_key(b, r): r for b, r in _drop_rules(first)}
    rules = sorted(_drop_rules(last), key=lambda br: (-(br[1].packets or 0), _key(*br)))
    out = []
    for backend, r in rules[:MAX_RULES]:
        key = _key(backend, r)
        then = before.get(key)
        legacy = isinstance(r, LegacyRule)
        out.append(NetfilterRule(
            source=("netlink NFT_MSG_GETRULE" if not legacy else
                    f"getsockopt IPT_SO_GET_ENTRIES ({r.family} {r.table})"),
            backend=backend, family=r.family, table=r.table,  # type: ignore[arg-type]
            chain=r.chain, handle=key[-1], verdict=r.verdict,  # type: ignore[arg-type]
            policy=legacy and r.number == 0,  # type: ignore[union-attr]
            packets_total=r.packets, bytes_total=r.bytes,
            packets_per_s=_rate(then.packets if then else None, r.packets, elapsed_s),
            bytes_per_s=_rate(then.bytes if then else None, r.bytes, elapsed_s),
            matches_ct_invalid=r.ct_invalid))
    return out, max(0, len(rules) - MAX_RULES)


def _rate(before: Optional[int], now: Optional[int], elapsed_s: Optional[float]) -> Optional[float]:
    if before is None or now is None or not elapsed_s or now < before:
        return None
    return round((now - before) / elapsed_s, 3)


@register_probe
class NetfilterProbe(Probe):
    name = "netfilter"
    provides = ("netfilter", "netfilter_rule")
    description = ("netfilter backends present (nf_tables, iptables-legacy) and the rules "
                   "that drop or reject, with counters (nftables netlink; never loads a module)")
    netns_scoped = True  # rulesets and table names are per network namespace

    def __init__(self, netns: Optional[str] = None) -> None:
        super().__init__()
        #: a named namespace (/run/netns/NAME) to read instead of the current one
        self.netns = netns

    def sample(self, ctx: ProbeContext) -> NetfilterSample:
        modules = read_kernel_modules(ctx)
        found = backends(ctx, modules)
        self._unreadable: list[str] = []
        legacy_v4 = self._table_names(ctx, "ip_tables_names")
        legacy_v6 = self._table_names(ctx, "ip6_tables_names")
        nft, reason = None, None
        if not ctx.live:
            reason = "a captured tree has no rules (they are read over netlink from a live kernel)"
        elif not modules.safe("nfnetlink", "nf_tables"):
            reason = f"nftables rules not read: {modules.why_not('nfnetlink', 'nf_tables')}"
        elif not ctx.is_root:
            reason = "nftables rules need CAP_NET_ADMIN (run sysdiag as root)"
        else:
            nft, reason = self._nft()
            if nft is not None:
                found["nf_tables"] = True
        legacy, legacy_reason = self._legacy(ctx, {"ip": legacy_v4, "ip6": legacy_v6})
        return NetfilterSample(modules=modules, backends=found, legacy_v4=legacy_v4,
                               legacy_v6=legacy_v6, nft=nft, reason=reason, legacy=legacy,
                               legacy_reason=legacy_reason)

    def _legacy(self, ctx: ProbeContext, names: dict[str, Optional[str]]
                ) -> tuple[list[LegacyTable], Optional[str]]:
        """Every table the *_tables_names files list (no other: asking loads its module)."""
        if self._unreadable:
            return [], (f"{', '.join(self._unreadable)}: permission denied (run sysdiag as "
                        "root to see iptables-legacy tables)")
        wanted = [(family, table) for family, listed in names.items()
                  for table in (listed or "").split(",") if table]
        if not wanted:
            return [], None
        if not ctx.live:
            return [], "iptables-legacy rules are not in a captured tree"
        if not ctx.is_root:
            return [], "iptables-legacy rules need CAP_NET_ADMIN (run sysdiag as root)"
        tables, problems = [], []
        for family, table in wanted:
            try:
                tables.append(read_table(family, table))
            except (OSError, ParseError) as err:
                problems.append(f"{family}tables {table}: {err}")
        return tables, ("iptables-legacy rules not read: " + "; ".join(problems)
                        if problems else None)

    def _table_names(self, ctx: ProbeContext, name: str) -> Optional[str]:
        path = ctx.net(name)
        try:
            return parse_tables_names(ctx.read_optional(path))
        except PermissionError:  # mode 0440: root only
            self._unreadable.append(str(path))
            return None

    def _nft(self) -> tuple[Optional[NftRuleset], Optional[str]]:
        for attempt in range(DUMP_RETRIES):
            sock = open_netlink(NETLINK_NETFILTER, self.netns)
            try:
                return dump_nftables(sock), None
            except DumpInterrupted:
                if attempt == DUMP_RETRIES - 1:
                    return None, "the ruleset kept changing during the dump (retried 3 times)"
            except PermissionError:
                return None, "nftables rules need CAP_NET_ADMIN (run sysdiag as root)"
            except OSError as err:
                # a kernel without nf_tables answers EOPNOTSUPP/ENOENT for the subsystem
                return None, f"nftables rules not read: {err.strerror or err}"
            finally:
                sock.close()
        raise AssertionError("unreachable")

    def facts(self, ctx: ProbeContext, first: Optional[NetfilterSample], last: NetfilterSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        rules, omitted = rule_facts(first, last, elapsed_s)
        reasons = [r for r in (last.reason, last.legacy_reason) if r is not None]
        nft = last.nft
        legacy_read = bool(last.legacy) or last.legacy_reason is None
        legacy_rules = sum(t.rules for t in last.legacy) if legacy_read else None
        both = (None if nft is None or legacy_rules is None
                else nft.rules > 0 and legacy_rules > 0)
        summary = Netfilter(
            source=str(ctx.proc("modules")) if nft is None else "netlink NFT_MSG_GETRULE",
            modules_supported=last.modules.supported,
            nf_tables=last.backends["nf_tables"], ip_tables=last.backends["ip_tables"],
            ip6_tables=last.backends["ip6_tables"], conntrack=last.backends["conntrack"],
            br_netfilter=last.backends["br_netfilter"],
            legacy_tables_v4=last.legacy_v4, legacy_tables_v6=last.legacy_v6,
            nft_tables=nft.tables if nft else None, nft_chains=nft.chains if nft else None,
            nft_rules=nft.rules if nft else None,
            nft_drop_rules=len(nft.drop_rules) if nft else None,
            nft_drop_policies=nft.drop_policies if nft else None,
            legacy_rules=legacy_rules,
            legacy_drop_rules=(sum(1 for t in last.legacy for r in t.drop_rules if r.number)
                               if legacy_read else None),
            legacy_drop_policies=(sum(t.drop_policies for t in last.legacy)
                                  if legacy_read else None),
            both_backends_in_use=both,
            rule_counters_available=nft is not None and not reasons,
            rule_counters_reason="; ".join(reasons) or None, rules_omitted=omitted)
        return [summary, *rules]
