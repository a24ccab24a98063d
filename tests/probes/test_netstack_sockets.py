"""sockets: sock_diag decoding, /proc/net/{tcp,udp}* parsing, aggregation, caps, owners,
module gating, and live namespaces with a full accept queue, retransmits, a zero window,
CLOSE_WAIT holders, UDP drops and a narrow ephemeral port range.

The *_6_18 texts and DIAG_* messages come from this 6.18 host (the messages are
inet_diag payloads captured in a test namespace: a sender whose data an nft input rule
dropped, and a reader that never reads).
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest
from netstack_helpers import netns, probe_in_netns, run, started
from probe_helpers import run_one, write_tree
from pyroute2.netlink.diag import inet_diag_msg

from sysdiag.facts import NetCounters, SocketSummary, TcpListener, UdpSocket
from sysdiag.probes.base import ProbeContext, Unavailable
from sysdiag.probes.netfilter.modules import KernelModules, read_kernel_modules
from sysdiag.probes.netlink import sockets as sockets_mod
from sysdiag.probes.netlink.sockets import (
    MAX_LISTENERS, ListenerRow, SocketSample, SocketsProbe, TcpTally, UdpRow, find_owners,
    listener_facts, parse_port_range, parse_proc_net_socks, proc_addr, summary_fact,
    tally_diag, udp_facts, udp_row_from_diag)
from sysdiag.probes.parse import ParseError

TCP_6_18 = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 576 1 00000000bc907e79 100 0 0 10 0
   1: 020200C0:9FAA 507100CB:0050 06 00000000:00000000 03:000013D9 00000000     0        0 0 3 000000008b20f198
"""
TCP6_6_18 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 389602 1 00000000edf91bbf 100 0 0 10 0
"""
UDP_6_18 = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 2499: 00000000:8B33 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 389603 2 00000000d479121f 0
 4932: 0100007F:14B4 00000000:0000 07 00000000:00000500 00:00000000 00000000     0        0 389601 2 00000000836b88ef 49
"""
UDP6_6_18 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 4985: 00000000000000000000000001000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 389600 2 00000000a398d9b0 0
"""

#: ESTABLISHED 58958 -> 7001, reader never reads: persist timer (4), tcpi_snd_wnd 0
DIAG_ZERO_WINDOW = """
AgEEAOZOG1l/AAABAAAAAAAAAAAAAAAAfwAAAQAAAAAAAAAAAAAAAAAAAAAeIAAAAAAAAAAAAAAAAAAAAMgqAAAAAADC5gUA
BQAIAAAAAAAIAA8AAAAAAAwAFQABAAAAAAAAAAYAFgBSAAAAHAECAAEAAAADB6ABgCwDAAAAAAAACAAAGAIAAAAAAAAAAAAA
AAAAAAAAAAAAAAAApAwAAAAAAACkDAAAhAYAAP//AADX/wAAZRQAAJUoAAD///9/DAAAAMv/AAADAAAAAAAAANf/AAAAAAAA
1/u2aQAAAAD//////////wEQAAAAAAAAAAAAAAAAAAAHAAAABQAAAADIKgAYAAAAAAAAAAIAAABVFRYFAAAAAKBgMQAAAAAA
oGAxAAAAAAAAAAAAAAAAAAMAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
"""
#: ESTABLISHED 55312 -> 7002, data dropped: retransmit timer (1), 3 RTOs in a row,
#: tcpi_retrans 1, tcpi_total_retrans 4
DIAG_RETRANS = """
AgEBA9gQG1p/AAABAAAAAAAAAAAAAAAAfwAAAQAAAAAAAAAAAAAAAAAAAAAfIAAAAAAAADwAAAAAAAAA6AMAAAAAAADF5gUA
BQAIAAAAAAAIAA8AAAAAAAwAFQABAAAAAAAAAAYAFgBSAAAAHAECAAEEAwADB6oBAOcYAAAAAADlfwAAGAIAAAEAAAAAAAAA
AQAAAAEAAAAAAAAAJAYAAAAAAACkDAAApAwAAP//AADX/wAABwAAAAMAAAD///9/AQAAAMv/AAADAAAAAAAAANf/AAAEAAAA
noJYHx8AAAD//////////wEAAAAAAAAAAAAAAAAAAAAHAAAAAQAAAAAAAAAHAAAAAAAAAAUAAAAAAAAAAAAAAABRMQAAAAAA
AAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAiBMAAAAAAACgDwAAAAAAAAAAAAAAAAAAAAAAAMv/AAAAAAEAAwAAAAMAAQACCwAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
"""
#: LISTEN 127.0.0.1:7001, backlog 8 (the wqueue of a listener), nobody waiting
DIAG_LISTEN = """
AgoAABtZAAB/AAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAXIAAAAAAAAAAAAAAAAAAACAAAAAAAAAAs6AUA
BQAIAAAAAAAIAA8AAAAAAAwAFQABAAAAAAAAAAYAFgBSAAAAHAECAAoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAoAAAAAAAAAAwAAAAAAAAAAAAAA
AAAAAP////////////////////8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
"""


def b64(text: str) -> bytes:
    return base64.b64decode("".join(text.split()))


def reference_tcp_info(body: bytes) -> dict:
    """pyroute2's own decoding of the same message (the reference for our offsets)."""
    msg = inet_diag_msg(struct.pack("=IHHII", len(body) + 16, 20, 2, 1, 0) + body)
    msg.decode()
    return msg.get_attr("INET_DIAG_INFO")


# ---- /proc/net/{tcp,udp}* ------------------------------------------------------------

def test_parse_this_hosts_tcp_files():
    rows = list(parse_proc_net_socks(TCP_6_18.splitlines(), "tcp"))
    listen, tw = rows
    assert (listen.state, listen.local_port, listen.inode, listen.uid) == (10, 2024, 576, 0)
    assert socket.inet_ntop(listen.family, listen.local) == "0.0.0.0"
    assert tw.state == 6 and tw.timer == 3 and tw.remote_port == 80
    assert socket.inet_ntop(tw.family, tw.local) == "192.0.2.2"
    assert socket.inet_ntop(tw.family, tw.remote) == "203.0.113.80"
    (six,) = parse_proc_net_socks(TCP6_6_18.splitlines(), "tcp6")
    assert six.family == socket.AF_INET6 and socket.inet_ntop(six.family, six.local) == "::1"
    assert six.local_port == 8080


def test_parse_udp_drops_column():
    rows = list(parse_proc_net_socks(UDP_6_18.splitlines(), "udp", udp=True))
    assert [(r.local_port, r.rx_queue, r.drops) for r in rows] == [(35635, 0, 0),
                                                                    (5300, 0x500, 49)]
    (six,) = parse_proc_net_socks(UDP6_6_18.splitlines(), "udp6", udp=True)
    assert six.drops == 0 and six.local_port == 5353


def test_proc_addr():
    assert proc_addr("0100007F", "x") == (socket.AF_INET, socket.inet_aton("127.0.0.1"))
    family, raw = proc_addr("000080FE00000000FFADE15609667CFE", "x")
    assert socket.inet_ntop(family, raw) == "fe80::56e1:adff:fe7c:6609"
    with pytest.raises(ParseError, match="neither 8 nor 32"):
        proc_addr("0100", "x")


@pytest.mark.parametrize("text, udp, problem", [
    ("", False, "empty file"),
    ("garbage\n", False, "header"),
    ("  sl  local_address\n   1: 00000000:0016 00000000:0000 0A\n", True, "4 columns"),
    (TCP_6_18.replace("00000000:07E8", "0000000Z:07E8"), False, "not hex"),
    (TCP_6_18.replace(" 576 ", " five "), False, "cannot parse"),
    (UDP_6_18.replace("836b88ef 49", "836b88ef x"), True, "cannot parse"),
])
def test_parse_rejects_malformed(text, udp, problem):
    with pytest.raises(ParseError, match=problem):
        list(parse_proc_net_socks(text.splitlines(), "/proc/net/x", udp=udp))


def test_header_only_is_no_sockets():
    assert list(parse_proc_net_socks(TCP_6_18.splitlines()[:1], "tcp")) == []


def test_port_range():
    assert parse_port_range("32768\t60999\n") == (32768, 60999)
    assert parse_port_range(None) is None and parse_port_range("60999 32768") is None
    assert parse_port_range("1 2 3") is None


# ---- sock_diag messages ----------------------------------------------------------------

def test_tcp_info_offsets_match_pyroute2_on_real_messages():
    for text in (DIAG_ZERO_WINDOW, DIAG_RETRANS):
        body = b64(text)
        ref = reference_tcp_info(body)
        tally = TcpTally(None)
        tally_diag(tally, body)
        assert tally.retrans_sockets == (1 if ref["tcpi_retrans"] else 0)
        assert tally.retrans_segs == ref["tcpi_total_retrans"]
        assert tally.snd_wnd_zero == (1 if ref["tcpi_snd_wnd"] == 0 else 0)
    assert reference_tcp_info(b64(DIAG_RETRANS))["tcpi_total_retrans"] == 4


def test_tally_of_real_messages():
    tally = TcpTally((32768, 60999))
    for text in (DIAG_LISTEN, DIAG_ZERO_WINDOW, DIAG_RETRANS):
        tally_diag(tally, b64(text))
    assert tally.total == 3 and tally.states == {"listen": 1, "established": 2}
    (listener,) = tally.listeners
    assert (listener.addr, listener.port, listener.accept_queue, listener.backlog) == \
        ("127.0.0.1", 7001, 0, 8)
    assert tally.persist == 1  # the zero-window connection
    assert tally.backoff == 1  # 3 RTOs in a row on the dropped one
    assert (tally.retrans_sockets, tally.retrans_segs, tally.snd_wnd_zero) == (1, 4, 1)
    assert tally.peer_retrans[(socket.AF_INET, socket.inet_aton("127.0.0.1") + bytes(12))] == 4
    # both ephemeral ports (58958, 55312) lie in the range, to two destination ports
    assert sorted(tally.per_destination.values()) == [1, 1]


def diag_message(family: int, state: int, sport: int, dport: int, rqueue: int = 0,
                 wqueue: int = 0, inode: int = 1, attrs: bytes = b"",
                 src: str = "127.0.0.1", dst: str = "127.0.0.1") -> bytes:
    def addr(text: str) -> bytes:
        raw = socket.inet_pton(family, text)
        return raw + bytes(16 - len(raw))

    return (struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", sport, dport)
            + addr(src) + addr(dst) + struct.pack("=I8s", 0, bytes(8))
            + struct.pack("=IIIII", 0, rqueue, wqueue, 0, inode) + attrs)


def nla(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + bytes(-len(data) % 4)


def test_udp_diag_drops_from_skmeminfo():
    meminfo = struct.pack("=9I", 0, 212992, 0, 212992, 0, 0, 0, 0, 77)
    body = diag_message(socket.AF_INET6, 7, 5353, 0, rqueue=1280, inode=42,
                        attrs=nla(7, meminfo), src="::1", dst="::")
    row = udp_row_from_diag(body)
    assert (row.addr, row.port, row.drops, row.rx_queue, row.remote) == ("::1", 5353, 77, 1280,
                                                                         None)
    assert udp_row_from_diag(diag_message(socket.AF_INET, 7, 53, 0)) is None  # no meminfo


def test_truncated_tcp_info_is_ignored_not_misread():
    short_info = nla(2, bytes(60))  # an old kernel's tcp_info, before total_retrans
    tally = TcpTally(None)
    tally_diag(tally, diag_message(socket.AF_INET, 1, 40000, 80, attrs=short_info))
    assert tally.total == 1 and tally.retrans_segs == 0 and not tally.have_info


# ---- facts: caps, ordering, rates -----------------------------------------------------

def sample_with(listeners=(), udp_rows=(), udp_drops=None, method="sock_diag"):
    tally = TcpTally((32768, 60999))
    tally.listeners = list(listeners)
    tally.total = len(tally.listeners)
    drops = udp_drops if udp_drops is not None else {r.inode: r.drops for r in udp_rows}
    return SocketSample(method=method, source="test", tally=tally, udp_total=len(drops),
                        udp_drops=drops, udp_rows=list(udp_rows))


def test_only_the_fullest_listeners_become_facts():
    rows = [ListenerRow(socket.AF_INET, "0.0.0.0", 1000 + i, accept_queue=i % 7, backlog=128,
                        inode=100 + i, uid=0) for i in range(MAX_LISTENERS + 10)]
    rows.append(ListenerRow(socket.AF_INET, "0.0.0.0", 9999, accept_queue=5, backlog=4,
                            inode=9, uid=0))
    sample = sample_with(rows)
    facts, omitted, repeated = listener_facts(sample, {9: (1234, "nginx")})
    assert len(facts) == MAX_LISTENERS and omitted == 11 and repeated == 0
    first = facts[0]
    assert (first.local_port, first.queue_pct, first.pid, first.comm) == (9999, 125.0, 1234,
                                                                          "nginx")
    assert all(isinstance(f, TcpListener) for f in facts)
    summary = summary_fact(None, sample, None, {}, omitted, 0)
    assert summary.listeners_full == 1 and summary.listeners_omitted == 11


def test_procfs_listeners_have_no_backlog_and_repeats_are_reported_once():
    rows = [ListenerRow(socket.AF_INET, "0.0.0.0", 22, 1, None, 2740, 0)] * 2
    sample = sample_with(rows, method="procfs")
    facts, omitted, repeated = listener_facts(sample, {})
    assert len(facts) == 1 and repeated == 1 and omitted == 0
    assert facts[0].backlog is None and facts[0].queue_pct is None
    assert summary_fact(None, sample, None, {}, 0, 0).listeners_full is None


def test_udp_drop_rates_per_socket_and_in_total():
    before = sample_with(udp_drops={1: 10, 2: 0, 3: 5})
    rows = [UdpRow(socket.AF_INET, "127.0.0.1", 5300, None, None, 0, 40, 1, 0),
            UdpRow(socket.AF_INET, "0.0.0.0", 514, None, None, 0, 6, 2, 0),
            UdpRow(socket.AF_INET, "0.0.0.0", 9000, None, None, 0, 9, 4, 0)]  # new socket
    after = sample_with(udp_rows=rows, udp_drops={1: 40, 2: 6, 4: 9})
    facts, omitted = udp_facts(before, after, 2.0, {})
    assert [(f.local_port, f.drops_total, f.drops_per_s) for f in facts] == \
        [(5300, 40, 15.0), (9000, 9, None), (514, 6, 3.0)]
    assert all(isinstance(f, UdpSocket) for f in facts) and omitted == 0
    summary = summary_fact(before, after, 2.0, {}, 0, 0)
    assert (summary.udp_with_drops, summary.udp_drops_open, summary.udp_drops_per_s) == \
        (3, 55, 18.0)


def test_close_wait_top_holder_and_port_range_share():
    tally = TcpTally((40000, 40009))  # 10 ports
    src, dst = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    for i in range(8):
        tally.add(socket.AF_INET, 1, src, 40000 + i, dst, 443, 0, None, 0, 100 + i, 0, 0, None)
    tally.add(socket.AF_INET, 1, src, 50000, dst, 443, 0, None, 0, 200, 0, 0, None)  # not ephemeral
    for inode in (300, 301, 302):
        tally.add(socket.AF_INET, 8, dst, 8080, src, 40000 + inode, 0, None, 0, inode, 0, 0,
                  None)
    sample = SocketSample(method="procfs", source="t", tally=tally)
    owners = {300: (77, "app"), 301: (77, "app"), 302: (88, "other")}
    summary = summary_fact(None, sample, None, owners, 0, 0)
    assert isinstance(summary, SocketSummary)
    assert summary.max_per_destination == 8 and summary.port_range_size == 10
    assert summary.port_range_used_pct == 80.0
    assert summary.max_destination == "10.0.0.1 -> 10.0.0.2:443"
    assert (summary.close_wait_top_pid, summary.close_wait_top_comm,
            summary.close_wait_top_count) == (77, "app", 2)
    assert summary.tcp_close_wait == 3 and summary.tcp_established == 9
    # /proc/net/tcp has no tcp_info: no lifetime retransmit counts
    assert summary.tcp_retrans_segs_open is None and summary.tcp_snd_wnd_zero is None
    # peers: 10.0.0.2 (the connects) and 10.0.0.1 (the CLOSE_WAIT sockets' remote end)
    assert summary.tcp_peers == 2


def test_peers_are_distinct_remote_addresses_of_connected_sockets():
    tally = TcpTally(None)
    a, b, c = (socket.inet_aton(x) for x in ("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    any_addr = bytes(4)
    tally.add(socket.AF_INET, 10, any_addr, 80, any_addr, 0, 0, 128, 0, 1, 0, 0, None)  # listener
    tally.add(socket.AF_INET, 7, a, 0, any_addr, 0, 0, None, 0, 2, 0, 0, None)  # never connected
    for port in (5001, 5002):
        tally.add(socket.AF_INET, 1, a, 40000 + port, b, port, 0, None, 0, port, 0, 0, None)
    tally.add(socket.AF_INET, 1, a, 41000, c, 22, 0, None, 0, 9, 0, 0, None)
    summary = summary_fact(None, SocketSample(method="procfs", source="t", tally=tally), None,
                           {}, 0, 0)
    assert summary.tcp_peers == 2


# ---- owners, module gating, trees -------------------------------------------------------

@pytest.mark.live
def test_find_owners_finds_this_process():
    with socket.socket() as sock:
        inode = os.fstat(sock.fileno()).st_ino
        found, note = find_owners(ProbeContext(), {inode})
        assert found[inode][0] == os.getpid() and note == ""
        _, note = find_owners(ProbeContext(), {inode, 2**40}, max_links=1)
        assert "stopped after" in note


def test_sock_diag_is_never_asked_when_it_would_load_a_module(monkeypatch, tmp_path):
    """A kernel with module support where inet_diag is not loaded: no netlink request."""
    monkeypatch.setattr(sockets_mod, "read_kernel_modules",
                        lambda ctx: KernelModules(supported=True, loaded=frozenset({"x"})))

    def forbidden(*args, **kwargs):
        raise AssertionError("sock_diag socket opened although inet_diag is not loaded")

    monkeypatch.setattr(sockets_mod, "open_netlink", forbidden)
    ctx = ProbeContext()  # live: /proc/net/tcp of this namespace
    probe = SocketsProbe()
    sample = probe.sample(ctx)
    assert sample.method == "procfs"
    assert any("inet_diag, tcp_diag not loaded" in w for w in probe.warnings)
    with pytest.raises(Unavailable, match="inet_diag"):
        SocketsProbe(netns="whatever").sample(ctx)


def test_fixture_tree(tree_ctx):
    outcome, facts = run_one(SocketsProbe(), tree_ctx)
    assert outcome.status == "ok", outcome.reason
    (summary,) = [f for f in facts if isinstance(f, SocketSummary)]
    assert summary.method == "procfs" and summary.tcp_listen == 3 and summary.udp_total == 5
    listeners = [f for f in facts if isinstance(f, TcpListener)]
    assert {(f.local_addr, f.local_port) for f in listeners} == {("0.0.0.0", 22),
                                                                 ("10.0.0.5", 22)}
    assert any("repeat" in w for w in outcome.warnings)  # the fixture lists one row twice


def test_captured_tree_with_a_broken_file_fails_naming_it(tmp_path):
    ctx = write_tree(tmp_path, {"proc/net/tcp": TCP_6_18, "proc/net/udp": "sl\n 1: 0 0\n"})
    outcome, _ = run_one(SocketsProbe(), ctx)
    assert outcome.status == "failed" and "proc/net/udp" in outcome.reason


def test_captured_tree_without_proc_net_is_unavailable(tmp_path):
    ctx = write_tree(tmp_path, {"proc/loadavg": "0 0 0 1/1 1\n"})
    outcome, _ = run_one(SocketsProbe(), ctx)
    assert outcome.status == "unavailable" and "/proc/net/tcp" in outcome.reason


# ---- live --------------------------------------------------------------------------------

def diag_safe() -> bool:
    return read_kernel_modules(ProbeContext()).safe("inet_diag", "tcp_diag")


@pytest.mark.live
def test_live_listener_queue_by_both_methods(monkeypatch):
    """A listener in this namespace with backlog 3 and five unaccepted connections."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(3)
        port = srv.getsockname()[1]
        clients = []
        try:
            for _ in range(5):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                clients.append(c)
            time.sleep(0.3)
            ctx = ProbeContext()
            if diag_safe():
                probe = SocketsProbe()
                sample = probe.sample(ctx)
                facts = probe.facts(ctx, None, sample, None)
                mine = [f for f in facts if isinstance(f, TcpListener) and f.local_port == port]
                assert len(mine) == 1
                # the queue holds backlog + 1 before the kernel drops (sk_acceptq_is_full)
                assert (mine[0].accept_queue, mine[0].backlog) == (4, 3)
                assert mine[0].queue_pct == pytest.approx(133.33, abs=0.01)
                assert mine[0].pid == os.getpid()
                if shutil.which("ss"):
                    line = next(l for l in run("ss", "-ltn").splitlines() if f":{port} " in l)
                    assert line.split()[1:3] == ["4", "3"]
            monkeypatch.setattr(sockets_mod, "read_kernel_modules",
                                lambda c: KernelModules(supported=True, loaded=frozenset({"x"})))
            probe = SocketsProbe()
            sample = probe.sample(ctx)
            assert sample.method == "procfs"
            row = next(r for r in sample.tally.listeners if r.port == port)
            assert row.accept_queue == 4 and row.backlog is None
        finally:
            for c in clients:
                c.close()


def wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise AssertionError(f"helper did not start: {line!r} {proc.stderr.read()[:500]}")


needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to create network namespaces")

#: inside a namespace: listen(2) on 127.0.0.1:7100, never accept; then N clients connect
OVERFLOW = """
import socket, sys, time
srv = socket.socket(); srv.bind(('127.0.0.1', 7100)); srv.listen(2)
clients = []
for _ in range(int(sys.argv[1])):
    c = socket.socket(); c.setblocking(False); c.connect_ex(('127.0.0.1', 7100)); clients.append(c)
print('ready', flush=True)
time.sleep(120)
"""

#: inside a namespace: a reader that never reads (7001: zero window) and a sender whose
#: data an nft input rule drops (7002: retransmits); then CLOSE_WAIT: clients of 7003 close,
#: the server keeps its ends; and a UDP socket with a tiny buffer that is flooded
SCENARIO = """
import socket, sys, time
def pair(port, rcvbuf=None):
    srv = socket.socket()
    if rcvbuf: srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    srv.bind(('127.0.0.1', port)); srv.listen(16)
    c = socket.create_connection(('127.0.0.1', port)); return srv, c, srv.accept()[0]
s1, c1, a1 = pair(7001, 4096)
c1.setblocking(False)
try:
    while True: c1.send(b'x' * 65536)
except BlockingIOError:
    pass
s2, c2, a2 = pair(7002)
s3 = socket.socket(); s3.bind(('127.0.0.1', 7003)); s3.listen(16)
held = []
for _ in range(3):
    c = socket.create_connection(('127.0.0.1', 7003)); held.append(s3.accept()[0]); c.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024); u.bind(('127.0.0.1', 5300))
sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(200): sender.sendto(b'x' * 500, ('127.0.0.1', 5300))
print('ready', flush=True)
sys.stdin.readline()
c2.send(b'y' * 1000)  # dropped by the nft rule the test adds meanwhile
print('sent', flush=True)
time.sleep(120)
"""


def ss_states(ns: str) -> dict[str, int]:
    """TCP sockets by state as `ss -tan` shows them in the namespace."""
    counts: dict[str, int] = {}
    for line in run("ip", "netns", "exec", ns, "ss", "-tan").splitlines()[1:]:
        state = line.split()[0].lower().replace("-", "_")
        counts[state] = counts.get(state, 0) + 1
    return counts


@pytest.mark.live
@pytest.mark.root
@needs_root
def test_live_accept_queue_overflow_in_a_namespace():
    if not diag_safe():
        pytest.skip("inet_diag is not loaded here (and the test must not load it)")
    with netns("ovf") as ns, started(["ip", "netns", "exec", ns, sys.executable, "-c",
                                      OVERFLOW, "8"]) as helper:
        wait_ready(helper)
        time.sleep(0.5)
        outcome, before = probe_in_netns(ns, "netstat")
        overflows_before = next(f for f in before if isinstance(f, NetCounters)) \
            .tcpext_listen_overflows_total
        probe = SocketsProbe(netns=ns)
        ctx = ProbeContext()
        facts = probe.facts(ctx, None, probe.sample(ctx), None)
        (listener,) = [f for f in facts if isinstance(f, TcpListener)]
        assert (listener.local_port, listener.backlog, listener.accept_queue) == (7100, 2, 3)
        assert listener.queue_pct == 150.0 and listener.pid is not None
        summary = next(f for f in facts if isinstance(f, SocketSummary))
        assert summary.listeners_full == 1 and summary.method == "sock_diag"
        # the clients that did not fit keep retrying their SYN (1 s, 3 s ...): each retry
        # meets the full queue and counts as a listen overflow
        assert overflows_before > 0
        time.sleep(2.5)
        _, after = probe_in_netns(ns, "netstat")
        overflows_after = next(f for f in after if isinstance(f, NetCounters)) \
            .tcpext_listen_overflows_total
        assert overflows_after > overflows_before
        # cross-check with ss (safe: inet_diag is already there)
        if shutil.which("ss"):
            line = next(l for l in run("ip", "netns", "exec", ns, "ss", "-ltn").splitlines()
                        if ":7100" in l)
            assert line.split()[1:3] == ["3", "2"]
            ss = ss_states(ns)
            assert summary.tcp_syn_sent == ss.get("syn_sent", 0)
            assert summary.tcp_established == ss.get("estab", 0)


@pytest.mark.live
@pytest.mark.root
@needs_root
@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft to drop one flow's data")
def test_live_retransmits_zero_window_close_wait_and_udp_drops():
    if not diag_safe():
        pytest.skip("inet_diag is not loaded here (and the test must not load it)")
    modules = read_kernel_modules(ProbeContext())
    if not modules.safe("nf_tables", "nfnetlink"):
        pytest.skip("nft would load nf_tables")
    with netns("scn") as ns:
        with started(["ip", "netns", "exec", ns, sys.executable, "-c", SCENARIO]) as helper:
            wait_ready(helper)
            run("ip", "netns", "exec", ns, "nft", "add table inet sdt; add chain inet sdt inp "
                "{ type filter hook input priority 0; }; add rule inet sdt inp tcp dport 7002 drop")
            _go(helper)
            time.sleep(2.5)  # a few RTOs on the dropped segment (200 ms, 400 ms, 800 ms)
            probe = SocketsProbe(netns=ns)
            ctx = ProbeContext()
            first = probe.sample(ctx)
            time.sleep(0.2)
            last = probe.sample(ctx)
            facts = probe.facts(ctx, first, last, 0.2)
            summary = next(f for f in facts if isinstance(f, SocketSummary))
            assert summary.tcp_persist_sockets >= 1 and summary.tcp_snd_wnd_zero >= 1
            assert summary.tcp_retrans_sockets >= 1 and summary.tcp_retrans_segs_open >= 2
            assert summary.tcp_retrans_top_peer == "127.0.0.1"
            assert summary.tcp_close_wait == 3
            assert summary.close_wait_top_count == 3
            assert summary.close_wait_top_comm and summary.close_wait_top_pid == \
                next(f.pid for f in facts if isinstance(f, TcpListener) and f.local_port == 7003)
            ss = ss_states(ns) if shutil.which("ss") else None
            if ss is not None:
                assert summary.tcp_close_wait == ss.get("close_wait", 0)
                assert summary.tcp_established == ss.get("estab", 0)
            if modules.safe("udp_diag"):
                (udp,) = [f for f in facts if isinstance(f, UdpSocket)]
                assert udp.local_port == 5300 and udp.drops_total > 0
                # the same count from /proc/net/udp, read inside the namespace
                outcome, inside = probe_in_netns(ns, "sockets")
                assert outcome["status"] == "ok", outcome
                (udp_proc,) = [f for f in inside if isinstance(f, UdpSocket)]
                assert udp_proc.drops_total == udp.drops_total and udp_proc.inode == udp.inode
                udp_text = run("ip", "netns", "exec", ns, "cat", "/proc/net/udp")
                drops = [int(l.split()[-1]) for l in udp_text.splitlines()[1:]
                         if ":14B4 " in l]
                assert drops == [udp.drops_total]


def _go(helper: subprocess.Popen) -> None:
    helper.stdin.write("go\n")
    helper.stdin.flush()
    assert helper.stdout.readline().strip() == "sent"


@pytest.mark.live
@pytest.mark.root
@needs_root
def test_live_ephemeral_ports_against_a_narrow_range():
    with netns("eph") as ns:
        run("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
            "net.ipv4.ip_local_port_range=40000 40019")
        script = """
import socket, time
srv = socket.socket(); srv.bind(('127.0.0.1', 7200)); srv.listen(64)
keep = []
for _ in range(20):
    keep.append(socket.create_connection(('127.0.0.1', 7200))); keep.append(srv.accept()[0])
try:
    socket.create_connection(('127.0.0.1', 7200))
    print('unexpected', flush=True)
except OSError as err:
    print('exhausted', err.errno, flush=True)
time.sleep(120)
"""
        with started(["ip", "netns", "exec", ns, sys.executable, "-c", script]) as helper:
            assert helper.stdout.readline().split()[:2] == ["exhausted", "99"]  # EADDRNOTAVAIL
            outcome, facts = probe_in_netns(ns, "sockets")
            assert outcome["status"] == "ok", outcome
            summary = next(f for f in facts if isinstance(f, SocketSummary))
            assert summary.port_range_size == 20 and summary.max_per_destination == 20
            assert summary.port_range_used_pct == 100.0
            assert re.fullmatch(r"127\.0\.0\.1 -> 127\.0\.0\.1:7200", summary.max_destination)
