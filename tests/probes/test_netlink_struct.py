"""The links and qdiscs probes decode their rtnetlink dumps with struct (no pyroute2 at run
time); on this host's own dumps their fields agree with pyroute2's decoding of the same
objects, and a collection never imports pyroute2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netlink.links import dump_links, link_names, reading_from_link_msg
from sysdiag.probes.netlink.qdiscs import QdiscsProbe

pytestmark = pytest.mark.live


def test_links_agree_with_pyroute2():
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        theirs = {m["index"]: m for m in ipr.get_links()}
    mine = {r.ifindex: r for r in map(reading_from_link_msg, dump_links())}
    assert set(mine) == set(theirs)
    for index, r in mine.items():
        m = theirs[index]
        assert r.ifname == m.get_attr("IFLA_IFNAME")
        assert (r.mtu, r.tx_queue_len, r.qdisc) == (
            m.get_attr("IFLA_MTU"), m.get_attr("IFLA_TXQLEN"), m.get_attr("IFLA_QDISC"))
        assert r.operstate == m.get_attr("IFLA_OPERSTATE").lower()
        assert r.master_ifindex == (m.get_attr("IFLA_MASTER") or None)
        assert r.link_ifindex == (m.get_attr("IFLA_LINK") or None)
        assert r.peer_netnsid == m.get_attr("IFLA_LINK_NETNSID")
        assert r.admin_up == bool(m["flags"] & 1)
        kind = m.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
        if kind:
            assert r.link_kind == kind
    assert link_names(dump_links()) == {i: r.ifname for i, r in mine.items()}


def test_qdiscs_agree_with_pyroute2():
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        theirs = {(m["index"], m["handle"], m["parent"], m.get_attr("TCA_KIND"))
                  for m in ipr.get_qdiscs()}
    sample = QdiscsProbe().sample(ProbeContext())
    assert set(sample.qdiscs) == theirs


def test_a_collection_does_not_import_pyroute2(tmp_path):
    code = ("import sys\nfrom sysdiag.cli import main\n"
            "try:\n    main(['collect', '--window', '0', '--no-ebpf', '-o', sys.argv[1]])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyroute2' "
            "or m.startswith(('sysdiag.engine', 'sysdiag.report.models'))))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "s.json").stat().st_size > 0
