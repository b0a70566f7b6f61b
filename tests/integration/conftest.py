"""Fixtures for real-kernel tests of ipmasq.gateway.nat_rules in network namespaces.

Every test gets its own lab (building one takes about 0.2 s, less than one
module run, so a fresh lab is both the cheapest reset and the safest). All
namespaces carry the prefix ``imq<pid>x<n>``; teardown deletes them and kills what
ran inside, and the session finalizer sweeps anything a crash left behind.

A machine that cannot run them (not root, a tool missing: see ``prerequisites.py``) fails
the run with the reason, before any test. Only with ``IPMASQ_ALLOW_SKIP=1`` are they
skipped instead, and ``-rs`` (pytest.ini) prints why.
"""
import itertools
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# pylint: disable=wrong-import-position
import foreign  # noqa: E402
import netlab  # noqa: E402
import prerequisites  # noqa: E402
from playbook import NatRules  # noqa: E402

BACKENDS = ("nftables", "iptables")
PREFIX = "imq%d" % os.getpid()
_lab_ids = itertools.count()

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    ours = [item for item in items if HERE in Path(str(item.fspath)).resolve().parents]
    reason = prerequisites.missing() if ours else None
    if not reason:
        return
    if not prerequisites.opted_out():
        raise pytest.UsageError(
            "integration tests cannot run: %s. Set %s=1 to skip them instead."
            % (reason, prerequisites.OPT_OUT))
    for item in ours:
        item.add_marker(pytest.mark.skip(reason=reason))


def _leftover_namespaces():
    out = netlab.run(["ip", "netns", "list"], check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if re.match(r"^%sx[0-9a-z]+-" % PREFIX, n)]


@pytest.fixture(scope="session", autouse=True)
def _sweep_namespaces():
    yield
    if prerequisites.missing():
        return
    for name in _leftover_namespaces():
        netlab.delete_namespace(netlab.Namespace(name))
    left = _leftover_namespaces()
    assert not left, "namespaces left behind: %s" % left


def _new_prefix():
    return "%sx%s" % (PREFIX, _b36(next(_lab_ids)))


def _b36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@pytest.fixture
def lab():
    """A fresh lan/srv/sw/gw/wan lab with echo servers and foreign rules in gw."""
    built = netlab.Lab(_new_prefix())
    try:
        built.build()
        foreign.install(built.gw)
        built.foreign_before = foreign.capture_not_ours(built.gw)
        yield built
    finally:
        built.destroy()


@pytest.fixture
def empty_ns():
    """A namespace with only loopback and no rules at all."""
    ns = netlab.make_empty_namespace(_new_prefix())
    try:
        yield ns
    finally:
        netlab.delete_namespace(ns)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def nat(lab, tmp_path, backend):
    return NatRules(lab.gw, tmp_path, backend)
