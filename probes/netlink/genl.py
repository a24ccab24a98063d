"""A minimal, read-only generic-netlink client: resolve a family, run dump requests.

pyroute2 0.9's ethtool module knows only LINKINFO/LINKMODES/RINGS; the ethtool probe
needs FEATURES, CHANNELS and COALESCE as well, so it speaks the wire format itself:
struct nlmsghdr (16 bytes) + struct genlmsghdr (4) + attributes (struct nlattr: u16
length, u16 type, payload padded to 4 bytes; type bit 15 = nested, bit 14 = net order).

Families are found by dumping the controller's list, never by asking for one by name:
a by-name lookup of an absent family makes the kernel call request_module().
The socket is created in the calling thread's network namespace.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Iterator, Optional

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

_NLMSGHDR = struct.Struct("=IHHII")
_GENLHDR = struct.Struct("=BBH")
_NLATTR = struct.Struct("=HH")
RECV_BYTES = 1 << 16
DUMP_RETRIES = 3


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno in .errno)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(attr_type: int, payload: bytes = b"", nested: bool = False) -> bytes:
    """One attribute, padded.

    >>> attr(1, struct.pack("=I", 7)).hex()
    '0800010007000000'
    """
    length = _NLATTR.size + len(payload)
    head = _NLATTR.pack(length, attr_type | (NLA_F_NESTED if nested else 0))
    return head + payload + b"\0" * (_align(length) - length)


def attrs(buf: bytes, source: str = "netlink") -> Iterator[tuple[int, bytes]]:
    """(type, payload) pairs of a run of attributes; a truncated one is an error.

    >>> list(attrs(attr(2, b"ab") + attr(3)))
    [(2, b'ab'), (3, b'')]
    """
    offset = 0
    while offset + _NLATTR.size <= len(buf):
        length, attr_type = _NLATTR.unpack_from(buf, offset)
        if length < _NLATTR.size or offset + length > len(buf):
            raise ValueError(f"{source}: attribute at byte {offset} claims {length} bytes, "
                             f"{len(buf) - offset} left")
        yield attr_type & NLA_TYPE_MASK, bytes(buf[offset + _NLATTR.size: offset + length])
        offset += _align(length)


def attr_map(buf: bytes, source: str = "netlink") -> dict[int, bytes]:
    """type -> payload (the first of each type)."""
    out: dict[int, bytes] = {}
    for attr_type, payload in attrs(buf, source):
        out.setdefault(attr_type, payload)
    return out


def u32(payload: Optional[bytes]) -> Optional[int]:
    return None if payload is None or len(payload) < 4 else struct.unpack_from("=I", payload)[0]


def u8(payload: Optional[bytes]) -> Optional[int]:
    return None if not payload else payload[0]


def cstring(payload: Optional[bytes]) -> Optional[str]:
    if payload is None:
        return None
    return payload.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def messages(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, flags, payload) of each netlink message in a datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(buf):
        length, msg_type, flags, _seq, _pid = _NLMSGHDR.unpack_from(buf, offset)
        if length < _NLMSGHDR.size or offset + length > len(buf):
            raise ValueError(f"netlink message at byte {offset} claims {length} bytes")
        yield msg_type, flags, bytes(buf[offset + _NLMSGHDR.size: offset + length])
        offset += _align(length)


class DumpInterrupted(Exception):
    """The kernel flagged the dump as inconsistent (a device changed meanwhile)."""


class GenlSocket:
    """One NETLINK_GENERIC socket; closes on exit."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_GENERIC)
        self.sock.settimeout(timeout_s)
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> "GenlSocket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _exchange(self, family: int, cmd: int, version: int, payload: bytes,
                  is_dump: bool) -> list[bytes]:
        self.seq += 1
        body = _GENLHDR.pack(cmd, version, 0) + payload
        flags = NLM_F_REQUEST | (NLM_F_DUMP if is_dump else 0)
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), family, flags, self.seq, 0)
                       + body)
        out: list[bytes] = []
        interrupted = False
        while True:
            data = self.sock.recv(RECV_BYTES)
            for msg_type, msg_flags, msg in messages(data):
                if msg_flags & NLM_F_DUMP_INTR:
                    interrupted = True
                if msg_type == NLMSG_DONE:
                    if interrupted:
                        raise DumpInterrupted()
                    return out
                if msg_type == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", msg)[0]
                    if code == 0:
                        continue
                    raise NetlinkError(code, os.strerror(code))
                if msg_type != family:
                    continue
                out.append(msg[_GENLHDR.size:])
                if not is_dump:
                    return out

    def get(self, family: int, cmd: int, version: int = 1, payload: bytes = b"") -> bytes:
        """The attributes of the reply to a single (non-dump) request."""
        return self._exchange(family, cmd, version, payload, is_dump=False)[0]

    def dump(self, family: int, cmd: int, version: int = 1, payload: bytes = b"") -> list[bytes]:
        """The attribute blocks of every reply to a dump request."""
        for attempt in range(DUMP_RETRIES):
            try:
                return self._exchange(family, cmd, version, payload, is_dump=True)
            except DumpInterrupted:
                if attempt == DUMP_RETRIES - 1:
                    raise NetlinkError(errno.EAGAIN, "dump kept being interrupted by changes")
        raise AssertionError("unreachable")

    def family_id(self, name: str) -> Optional[int]:
        """The id of a generic-netlink family, None when the kernel does not have it."""
        for block in self.dump(GENL_ID_CTRL, CTRL_CMD_GETFAMILY):
            found = attr_map(block, "genl controller")
            if cstring(found.get(CTRL_ATTR_FAMILY_NAME)) == name:
                ident = found.get(CTRL_ATTR_FAMILY_ID)
                return None if ident is None else struct.unpack_from("=H", ident)[0]
        return None
