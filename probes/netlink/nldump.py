"""Streaming netlink dumps decoded with `struct`, for tables that can be huge.

pyroute2 decodes every message into a Python object tree (measured on this host: about
50 µs per socket without tcp_info, 90 µs with it, 85 µs per route, and the whole dump is
held in memory before the first message is returned). A host with 100,000 sockets or a
full BGP table would take seconds and hundreds of MB. The socket, neighbour and route
probes therefore read their dumps here: one message at a time, only the fields they need,
and they can stop early. The links and qdiscs probes read their (small) dumps here too:
pyroute2's import alone costs ~0.09 s CPU, and its decoding was most of their
per-interface cost. A named namespace is entered with setns in a thread of its own
(probes/scope.py), never created.

Only dump requests are sent; no multicast group is joined.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Iterator, Optional

from ..base import Unavailable
from .rtnl import DUMP_RETRIES, NETNS_RUN_DIR

NETLINK_ROUTE = 0
NETLINK_SOCK_DIAG = 4
NETLINK_NETFILTER = 12

NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR = 0x1, 0x2, 0x10
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NLA = struct.Struct("=HH")  # nlattr: len, type
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
RECV_BYTES = 1 << 16


class DumpInterrupted(Exception):
    """The kernel flagged the dump as inconsistent (the table changed during it)."""


def align4(n: int) -> int:
    return (n + 3) & ~3


def iter_attrs(buf: bytes, offset: int = 0, end: Optional[int] = None) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in buf[offset:end].

    >>> list(iter_attrs(bytes([8, 0, 3, 0, 101, 116, 104, 0])))
    [(3, b'eth\\x00')]
    """
    end = len(buf) if end is None else end
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(buf, offset)
        if length < 4 or offset + length > end:
            break  # malformed or truncated: stop rather than read garbage
        yield kind & NLA_TYPE_MASK, buf[offset + 4: offset + length]
        offset += align4(length)


def attr_map(buf: bytes, offset: int = 0) -> dict[int, bytes]:
    """type -> payload (the first of each type)."""
    out: dict[int, bytes] = {}
    for kind, payload in iter_attrs(buf, offset):
        out.setdefault(kind, payload)
    return out


def attr_str(payload: Optional[bytes]) -> Optional[str]:
    if payload is None:
        return None
    return payload.split(b"\0", 1)[0].decode("utf-8", "replace")


def attr_u32(payload: Optional[bytes]) -> Optional[int]:
    if payload is None or len(payload) < 4:
        return None
    return struct.unpack_from("=I", payload)[0]


def attr_u64(payload: Optional[bytes]) -> Optional[int]:
    if payload is None or len(payload) < 8:
        return None
    return struct.unpack_from("=Q", payload)[0]


def addr_str(family: int, payload: Optional[bytes]) -> Optional[str]:
    """An IPv4/IPv6 address attribute as text."""
    if payload is None:
        return None
    try:
        return socket.inet_ntop(family, payload[:4] if family == socket.AF_INET else payload[:16])
    except (ValueError, OSError):
        return None


def open_netlink(proto: int, netns: Optional[str] = None) -> socket.socket:
    """A netlink socket in the current namespace or in a named one (/run/netns/NAME);
    the namespace is entered, never created. A socket stays in the namespace it was
    created in, so a short-lived thread enters the namespace (setns moves only the
    calling thread), creates the socket and leaves (probes/scope.py)."""
    if netns is None:
        return _netlink_socket(proto)
    path = netns if os.path.isabs(netns) else os.path.join(NETNS_RUN_DIR, netns)
    if not os.path.exists(path):
        raise Unavailable(f"network namespace {netns!r} does not exist "
                          "(list them with `ip netns list`)")
    from ..scope import run_in_netns

    return run_in_netns(path, lambda: _netlink_socket(proto),
                        label=f"network namespace {netns!r}")


def _netlink_socket(proto: int) -> socket.socket:
    try:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
    except PermissionError as err:
        raise Unavailable(f"not allowed to open a netlink socket ({err.strerror})") from err


def dump(sock: socket.socket, msg_type: int, payload: bytes, seq: int = 1,
         timeout_s: float = 5.0, flags: int = NLM_F_REQUEST | NLM_F_DUMP
         ) -> Iterator[tuple[int, bytes]]:
    """Send one dump request and yield (message type, message payload) until NLMSG_DONE.

    Raises OSError for a netlink error answer (errno set), DumpInterrupted when the kernel
    flags the dump as inconsistent, TimeoutError when the kernel stops answering.
    The caller may stop iterating early; then it must close the socket."""
    sock.settimeout(timeout_s)
    request = _HDR.pack(_HDR.size + len(payload), msg_type, flags, seq, 0) + payload
    sock.sendto(request, (0, 0))
    interrupted = False
    while True:
        try:
            data = sock.recv(RECV_BYTES)
        except socket.timeout:
            raise TimeoutError(errno.ETIMEDOUT, f"netlink dump (type {msg_type}) "
                               f"got no answer for {timeout_s:.0f} s") from None
        if not data:
            raise OSError(errno.ECONNRESET, "netlink socket closed during a dump")
        offset = 0
        while offset + _HDR.size <= len(data):
            length, kind, mflags, mseq, _ = _HDR.unpack_from(data, offset)
            if length < _HDR.size or offset + length > len(data):
                raise OSError(errno.EPROTO, f"truncated netlink message (length {length})")
            body = data[offset + _HDR.size: offset + length]
            offset += align4(length)
            if mseq != seq:
                continue  # not ours (a stale answer)
            if mflags & NLM_F_DUMP_INTR:
                interrupted = True
            if kind == NLMSG_DONE:
                # some families put an error code in DONE (sock_diag with a bad filter)
                code = struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                if code < 0:
                    raise OSError(-code, f"netlink dump (type {msg_type}): "
                                         f"{os.strerror(-code)}")
                if interrupted:
                    raise DumpInterrupted(f"netlink dump (type {msg_type}) was interrupted "
                                          "by a concurrent change")
                return
            if kind == NLMSG_ERROR:
                code = struct.unpack_from("=i", body)[0] if len(body) >= 4 else -errno.EPROTO
                if code == 0:
                    continue  # an ACK
                raise OSError(-code, f"netlink dump (type {msg_type}): {os.strerror(-code)}")
            if kind == NLMSG_NOOP:
                continue
            yield kind, body


def dump_all(sock: socket.socket, msg_type: int, payload: bytes,
             retries: int = DUMP_RETRIES) -> list[bytes]:
    """Every message payload of one dump (for tables of a few hundred entries), dumped
    again when the kernel flags it as interrupted by a concurrent change."""
    for attempt in range(1, retries + 1):
        try:
            return [body for _, body in dump(sock, msg_type, payload, seq=attempt)]
        except DumpInterrupted:
            if attempt == retries:
                raise
    raise AssertionError("unreachable")


def set_strict(sock: socket.socket) -> bool:
    """Ask the kernel to apply dump filters (4.20+); False when it cannot."""
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        return True
    except OSError:
        return False
