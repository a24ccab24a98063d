"""iptables-legacy rules and counters, read the way iptables-save does but without its
module loading: IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES (IP6T_* for IPv6) on a raw socket.

Asking ip_tables for a table it does not have makes the kernel load iptable_<name>
(xt_request_find_table_lock), so only the tables /proc/net/ip{,6}_tables_names already
lists are asked for, and IPv6 only when that file exists (an AF_INET6 socket would load
ipv6 itself). The socket options need CAP_NET_ADMIN.

The blob is a sequence of entries (struct ipt_entry / ip6t_entry): the header with the
counters, the matches, and the target at target_offset. Built-in chains start at the
hook_entry offsets and end with their policy at the underflow offsets; a user chain starts
after an ERROR target that carries its name; the table ends with an ERROR target named
"ERROR". A standard target (empty name) holds a verdict: negative is -NF_<verdict>-1
(so -1 is DROP), positive is a jump offset.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import Iterator, Optional

from ..parse import ParseError

SOL_IP, SOL_IPV6 = 0, 41
SO_GET_INFO, SO_GET_ENTRIES = 64, 65  # IPT_SO_* and IP6T_SO_* share the numbers
HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
NF_DROP = 0
XT_TABLE_MAXNAMELEN = 32

_GETINFO = struct.Struct("=32sI5I5III")  # name valid_hooks hook_entry[5] underflow[5] num size
_TARGET = struct.Struct("=H29sB")  # xt_entry_target: target_size, name, revision


@dataclass(frozen=True)
class Layout:
    """Where the fields of one family's entry header are."""

    family: str  # "ip" | "ip6"
    target_offset_at: int  # offset of u16 target_offset (next_offset follows)
    counters_at: int  # struct xt_counters {u64 pcnt, bcnt}
    elems_at: int  # first match


IPV4 = Layout("ip", 88, 96, 112)  # struct ipt_ip is 84 bytes
IPV6 = Layout("ip6", 140, 152, 168)  # struct ip6t_ip6 is 136 bytes (padded)


@dataclass(frozen=True)
class LegacyRule:
    family: str
    table: str
    chain: str
    number: int  # 1-based position in its chain (iptables -L --line-numbers)
    verdict: Optional[str]  # "drop" | "reject" | None
    packets: int
    bytes: int
    ct_invalid: bool


@dataclass(frozen=True)
class LegacyTable:
    family: str
    name: str
    rules: int  # rules, without the chain policies
    drop_policies: int  # built-in chains whose policy is DROP
    drop_rules: tuple[LegacyRule, ...]  # rules, and DROP policies (number 0), that drop


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _ct_invalid(name: str, revision: int, data: bytes) -> bool:
    """Does a match test for conntrack state INVALID (bit 0 of the state mask)?"""
    if name == "state" and len(data) >= 4:  # struct xt_state_info {u32 statemask}
        return bool(struct.unpack_from("=I", data)[0] & 1)
    if name == "conntrack" and len(data) >= 151:
        # struct xt_conntrack_mtinfo1..3: 8 addresses (128 bytes), expires (8), l4proto and
        # four ports (10), then match_flags u16 at 146 and state_mask at 150 (u8 in
        # revision 1, u16 from revision 2)
        match_flags = struct.unpack_from("=H", data, 146)[0]
        state = data[150] if revision <= 1 else struct.unpack_from("=H", data, 150)[0]
        return bool(match_flags & 1 and state & 1)
    return False


def parse_entries(blob: bytes, family: str, table: str, hook_entry: dict[int, int],
                  underflow: dict[int, int]) -> LegacyTable:
    """Walk an IPT_SO_GET_ENTRIES blob (starting at the first entry)."""
    layout = IPV4 if family == "ip" else IPV6
    source = f"{family}tables {table}"
    starts = {offset: HOOKS[hook] for hook, offset in hook_entry.items()}
    policies = set(underflow.values())
    chain, number, rules, drop_policies = "?", 0, 0, 0
    drops: list[LegacyRule] = []
    offset = 0
    while offset < len(blob):
        if offset + layout.elems_at > len(blob):
            raise ParseError(source, f"entry at {offset} is truncated")
        target_offset, next_offset = struct.unpack_from("=HH", blob,
                                                         offset + layout.target_offset_at)
        if next_offset < layout.elems_at or target_offset < layout.elems_at or \
                target_offset + _TARGET.size > next_offset or offset + next_offset > len(blob):
            raise ParseError(source, f"entry at {offset}: offsets {target_offset}/"
                                     f"{next_offset} do not fit")
        packets, nbytes = struct.unpack_from("=QQ", blob, offset + layout.counters_at)
        target_size, raw_name, _ = _TARGET.unpack_from(blob, offset + target_offset)
        target = _cstr(raw_name)
        data = blob[offset + target_offset + _TARGET.size: offset + next_offset]
        if offset in starts:
            chain, number = starts[offset], 0
        if target == "ERROR":
            name = _cstr(data)
            if name == "ERROR":
                break  # the end of the table
            chain, number = name, 0  # a user chain starts after this entry
            offset += next_offset
            continue
        verdict = None
        if target == "" and len(data) >= 4:
            code = struct.unpack_from("=i", data)[0]
            if code == -NF_DROP - 1:
                verdict = "drop"
        elif target == "REJECT":
            verdict = "reject"
        invalid = any(_ct_invalid(*m) for m in _matches(blob, offset, layout, target_offset))
        if chain not in HOOKS and target == "" and _next_is_error(blob, offset + next_offset,
                                                                   layout):
            offset += next_offset  # the RETURN every user chain ends with: not a rule
            continue
        if offset in policies:
            if verdict == "drop":
                drop_policies += 1
                drops.append(LegacyRule(family, table, chain, 0, "drop", packets, nbytes, False))
        else:
            number += 1
            rules += 1
            if verdict is not None:
                drops.append(LegacyRule(family, table, chain, number, verdict, packets, nbytes,
                                        invalid))
        offset += next_offset
    return LegacyTable(family=family, name=table, rules=rules, drop_policies=drop_policies,
                       drop_rules=tuple(drops))


def _next_is_error(blob: bytes, offset: int, layout: Layout) -> bool:
    if offset + layout.elems_at > len(blob):
        return False
    target_offset = struct.unpack_from("=H", blob, offset + layout.target_offset_at)[0]
    if offset + target_offset + _TARGET.size > len(blob):
        return False
    return _cstr(_TARGET.unpack_from(blob, offset + target_offset)[1]) == "ERROR"


def _matches(blob: bytes, offset: int, layout: Layout,
             target_offset: int) -> Iterator[tuple[str, int, bytes]]:
    """(name, revision, data) of each xt_entry_match between the header and the target."""
    at = offset + layout.elems_at
    end = offset + target_offset
    while at + _TARGET.size <= end:
        size, raw_name, revision = _TARGET.unpack_from(blob, at)
        if size < _TARGET.size or at + size > end:
            break
        yield _cstr(raw_name), revision, blob[at + _TARGET.size: at + size]
        at += size


class _Libc:
    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.getsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                         ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]

    def getsockopt(self, fd: int, level: int, option: int, buf: ctypes.Array) -> int:
        """getsockopt with a caller-filled buffer (Python's socket.getsockopt cannot send
        the table name in)."""
        size = ctypes.c_uint32(len(buf))
        if self.libc.getsockopt(fd, level, option, buf, ctypes.byref(size)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return size.value


def read_table(family: str, table: str) -> LegacyTable:
    """Read one table that /proc/net/ip{,6}_tables_names lists. Needs CAP_NET_ADMIN."""
    if not table or len(table) >= XT_TABLE_MAXNAMELEN or not table.replace("_", "").isalnum():
        raise ParseError(f"{family}_tables_names", f"not a table name: {table[:40]!r}")
    af, level = (socket.AF_INET, SOL_IP) if family == "ip" else (socket.AF_INET6, SOL_IPV6)
    libc = _Libc()
    with socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        name = table.encode().ljust(XT_TABLE_MAXNAMELEN, b"\0")
        info_buf = ctypes.create_string_buffer(name, _GETINFO.size)
        libc.getsockopt(sock.fileno(), level, SO_GET_INFO, info_buf)
        info = _GETINFO.unpack(info_buf.raw)
        valid, hook_entry, underflow, size = info[1], info[2:7], info[7:12], info[13]
        for _ in range(3):  # the table can change size between the two calls (EAGAIN)
            header = struct.pack("=32sI4x", name, size)  # struct ipt_get_entries, 8-aligned
            buf = ctypes.create_string_buffer(header, len(header) + size)
            try:
                libc.getsockopt(sock.fileno(), level, SO_GET_ENTRIES, buf)
                break
            except OSError as err:
                if err.errno != errno.EAGAIN:
                    raise
                libc.getsockopt(sock.fileno(), level, SO_GET_INFO, info_buf)
                info = _GETINFO.unpack(info_buf.raw)
                valid, hook_entry, underflow, size = info[1], info[2:7], info[7:12], info[13]
        else:
            raise OSError(errno.EAGAIN, f"{family}tables {table} kept changing while read")
    hooks = [h for h in range(len(HOOKS)) if valid & (1 << h)]
    return parse_entries(buf.raw[len(header):], family, table,
                         {h: hook_entry[h] for h in hooks}, {h: underflow[h] for h in hooks})
