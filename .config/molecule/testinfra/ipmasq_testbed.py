"""pytest plugin for the scenarios' testinfra tests, loaded through PYTEST_PLUGINS.

The ``testbed`` fixture reaches any container of the scenario by inventory name or group and
knows the addresses the scenario declared (``testbed_addresses``). ``echo_server`` runs
ipmasq-echo in a container for the duration of a ``with`` block, and ``probe`` sends one
TCP connection or UDP datagram with ipmasq-probe and returns the reply line split into
(server name, peer address, peer port). ``blocked`` sends a probe that must time out, and
``forward_counter`` counts one flow's packets in a gateway's forward hook, around the filter
chains: together they show that the gateway dropped the probe, not that the probe failed.
``nft_listing`` lists a gateway's nft rules without their counters, for comparing them as text.

A verify session in which no test ran fails. With IPMASQ_VERIFY_LOG set (``make molecule``
sets it), each session appends ``ran=N skipped=N failed=N`` to that file, so a verify step
that Molecule skipped altogether ("no tests found") shows up as a missing line.
"""

import contextlib
import json
import os
import re
import shlex
import time
import uuid

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner


class Testbed:
    """The containers of one Molecule scenario."""

    def __init__(self, inventory):
        self.inventory = inventory
        self._runner = AnsibleRunner(inventory)

    def names(self, pattern="all"):
        """Inventory names matching a host or group pattern, sorted."""
        return self._runner.get_hosts(pattern)

    def one(self, group):
        """The single host of a group (fails if there are none or several)."""
        names = self.names(group)
        assert len(names) == 1, "expected one host in group %r, found %r" % (group, names)
        return names[0]

    @staticmethod
    def host(name):
        """A testinfra Host for the container `name`.

        The podman backend runs `podman exec` directly: much faster than one Ansible run
        per command, which is what the default `host` fixture costs.
        """
        return testinfra.get_host("podman://%s" % name)

    def variables(self, name):
        return self._runner.get_variables(name)

    @staticmethod
    def without_counters(text):
        """nft text without the rules' counters ("counter" in a saved ruleset, "counter packets
        N bytes N" in a listing), so the rules' matches and verdicts can be compared as text."""
        return re.sub(r" counter( packets [0-9]+ bytes [0-9]+)?(?= )", "", text)

    def nft_listing(self, name, what="table inet ipmasq"):
        """`nft list <what>` on container `name`, without counters; fails if nft fails."""
        return self.without_counters(self.host(name).run_expect([0], "nft list %s" % what).stdout)

    def address(self, name, network):
        """The static address of container `name` on `network`, as declared in molecule.yml."""
        return self.variables(name)["testbed_addresses"][network]

    @contextlib.contextmanager
    def echo_server(self, name, tcp=(), udp=(), seconds=300):
        """Run ipmasq-echo in container `name` as a transient unit; it answers as `name`.

        RuntimeMaxSec bounds its life even if the test run dies before cleanup.
        """
        host = self.host(name)
        unit = "testbed-echo-%s" % uuid.uuid4().hex[:8]
        ports = ["--tcp=%d" % port for port in tcp] + ["--udp=%d" % port for port in udp]
        host.run_expect(
            [0],
            "systemd-run --unit=%s --collect --property=RuntimeMaxSec=%d /usr/local/bin/ipmasq-echo --name=%s %s"
            % (unit, seconds, shlex.quote(name), " ".join(ports)),
        )
        try:
            self._wait_listening(host, tcp, udp)
            yield
        finally:
            host.run("systemctl stop %s", unit)

    @staticmethod
    def _wait_listening(host, tcp, udp, timeout=15.0):
        wanted = [("-Hltn", port) for port in tcp] + [("-Hlun", port) for port in udp]
        deadline = time.monotonic() + timeout
        for flags, port in wanted:
            while host.run("ss %s %s", flags, "sport = :%d" % port).stdout.strip() == "":
                assert time.monotonic() < deadline, "echo server did not listen on port %d" % port
                time.sleep(0.2)

    def probe(self, name, proto, address, port, timeout=2):
        """Send one probe from container `name`; return the CommandResult (rc 1 when no reply)."""
        return self.host(name).run(
            "/usr/local/bin/ipmasq-probe %s %s %s --timeout %s", proto, address, str(port), str(timeout)
        )

    def reply(self, name, proto, address, port, timeout=2):
        """Probe and return the echo reply as (server name, peer address, peer port)."""
        result = self.probe(name, proto, address, port, timeout)
        assert result.rc == 0, "%s: %s %s:%d failed: %s" % (name, proto, address, port, result.stderr.strip())
        server, peer, peer_port = result.stdout.split()
        return server, peer, int(peer_port)

    def blocked(self, name, proto, address, port, timeout=2):
        """Probe and require a timeout: no answer at all, the mark of a dropped packet.

        A refused connection, an unreachable network or a probe that crashed fails
        differently, and proves nothing about a drop rule.
        """
        result = self.probe(name, proto, address, port, timeout)
        assert result.rc == 1 and result.stderr.strip().endswith("timed out"), (
            "%s: %s %s:%d should time out, got rc=%d stdout=%r stderr=%r"
            % (name, proto, address, port, result.rc, result.stdout, result.stderr))
        return result

    @contextlib.contextmanager
    def forward_counter(self, gateway, source, destination, proto, port):
        """Count one flow's packets in `gateway`'s forward hook before and after its filter chains.

        A table of the test's own holds two counters on the forward hook: at priority
        filter - 10 (the packet arrived) and filter + 10 (no filter chain dropped it). Our
        table inet ipmasq and iptables' FORWARD chain sit at priority filter, between them.
        Yields a ForwardCounter; the table is deleted on the way out.
        """
        host = self.host(gateway)
        table = "testbed_count_%s" % uuid.uuid4().hex[:8]
        match = "ip saddr %s ip daddr %s meta l4proto %s th dport %d" % (source, destination, proto, port)
        script = "\n".join([
            "table inet %s {" % table,
            "  chain arrived { type filter hook forward priority filter - 10; policy accept; %s counter; }" % match,
            "  chain passed { type filter hook forward priority filter + 10; policy accept; %s counter; }" % match,
            "}", ""])
        host.run_expect([0], "printf '%%s' %s | nft -f -", script)
        try:
            yield ForwardCounter(host, table)
        finally:
            host.run("nft delete table inet %s", table)


class ForwardCounter:
    """The two counters of Testbed.forward_counter."""

    def __init__(self, host, table):
        self.host = host
        self.table = table

    def read(self):
        """(packets that arrived, packets that passed the filter chains)."""
        listing = json.loads(self.host.run_expect([0], "nft -j list table inet %s", self.table).stdout)
        counts = {}
        for item in listing["nftables"]:
            rule = item.get("rule")
            if rule:
                counts[rule["chain"]] = sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
        return counts["arrived"], counts["passed"]


# -- every verify session must run a test, and says how many it ran

_OUTCOMES = {"ran": 0, "skipped": 0, "failed": 0}


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            _OUTCOMES["skipped"] += 1
        else:
            _OUTCOMES["ran"] += 1
            _OUTCOMES["failed"] += int(report.failed)


def pytest_sessionfinish(session, exitstatus):
    log = os.environ.get("IPMASQ_VERIFY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write("ran=%(ran)d skipped=%(skipped)d failed=%(failed)d\n" % _OUTCOMES)
    if exitstatus == pytest.ExitCode.OK and not _OUTCOMES["ran"]:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.fixture(scope="session")
def testbed():
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.fail("MOLECULE_INVENTORY_FILE is not set: run these tests through `molecule verify`")
    return Testbed(inventory)
