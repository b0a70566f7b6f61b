"""NAT through a real gateway: LAN client and server behind it, WAN server and client outside.

Shared by the default (nftables) and iptables scenarios: every expectation comes from the
scenario's inventory (addresses, ipmasq_* variables of the gateway), none is written here.
Molecule runs these tests twice: on the converged gateway, and again after side_effect.yml
restarted it, when only ipmasq.service can have restored the rules.
"""

import os
import time

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

RUNNER = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
ALL = RUNNER.get_hosts("all")
GATEWAY_VARS = RUNNER.get_variables(RUNNER.get_hosts("gateways")[0])

ECHO_PORT = 7001

# The role's defaults, for the variables a scenario leaves out.
BACKEND = GATEWAY_VARS.get("ipmasq_backend", "auto")
CONNTRACK_MAX = int(GATEWAY_VARS.get("ipmasq_conntrack_max", 262144))
CONNTRACK_TIMEOUTS = GATEWAY_VARS.get("ipmasq_conntrack_timeouts", {})
STATIC_NAT = GATEWAY_VARS.get("ipmasq_static_nat", [])
CONNECTION_LIMIT = int(GATEWAY_VARS.get("ipmasq_client_connection_limit", 0))

# Opens COUNT TCP connections one after the other and keeps them open, writing one word per
# connection (ok, refused, timeout) and then "held" to FILE; exits after 60 s at most.
HOLD = """
import socket, sys, time
host, port, count, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
held, words = [], []
for _ in range(count):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port)); held.append(s); words.append("ok")
    except ConnectionRefusedError:
        words.append("refused")
    except OSError:
        words.append("timeout")
open(out, "w").write(" ".join(words + ["held"]) + "\\n")
time.sleep(60)
"""

# ipmasq_conntrack_timeouts keys used by the scenarios, and their sysctls.
TIMEOUT_SYSCTLS = {
    "udp": "net.netfilter.nf_conntrack_udp_timeout",
    "tcp_established": "net.netfilter.nf_conntrack_tcp_timeout_established",
}


def _forward_cases(hairpin_only=False):
    """(protocol, public port, LAN port) for each port forward: both ends of a range."""
    cases = []
    for forward in GATEWAY_VARS.get("ipmasq_port_forwards", []):
        if hairpin_only and not forward.get("hairpin"):
            continue
        protocols = ["tcp", "udp"] if forward["protocol"] == "tcp_udp" else [forward["protocol"]]
        first, _dash, last = str(forward["port"]).partition("-")
        ports = [int(first), int(last)] if last else [int(first)]
        for proto in protocols:
            for port in ports:
                to_port = forward.get("to_port") or port
                cases.append(pytest.param(proto, port, int(to_port), forward["to_address"],
                                          id="%s-%d" % (proto, port)))
    return cases


def _owner_of(testbed, address):
    """The container that holds `address` on the LAN."""
    owners = [name for name in testbed.names("all")
              if testbed.variables(name).get("testbed_addresses", {}).get("lan") == address]
    assert len(owners) == 1, "expected one container with LAN address %s, found %r" % (address, owners)
    return owners[0]


@pytest.mark.parametrize("name", ALL)
def test_systemd_finished_booting(testbed, name):
    host = testbed.host(name)
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), host.run("systemctl --failed --no-legend").stdout


@pytest.mark.parametrize("name", ALL)
def test_traffic_tools_are_installed(testbed, name):
    host = testbed.host(name)
    for tool in ("/usr/local/bin/ipmasq-echo", "/usr/local/bin/ipmasq-probe"):
        assert host.file(tool).mode & 0o111, tool


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("client_group, network", [("lan_clients", "lan"), ("wan_servers", "wan")])
def test_neighbour_reaches_gateway(testbed, client_group, network, proto):
    """A LAN host reaches the gateway's LAN address, a WAN host its WAN address, unNATed."""
    gateway = testbed.one("gateways")
    client = testbed.one(client_group)
    gateway_address = testbed.address(gateway, network)
    ports = {proto: [ECHO_PORT]}
    with testbed.echo_server(gateway, **ports):
        server, peer, _port = testbed.reply(client, proto, gateway_address, ECHO_PORT)
    assert (server, peer) == (gateway, testbed.address(client, network))


def test_lan_client_routes_through_gateway(testbed):
    client = testbed.one("lan_clients")
    gateway = testbed.one("gateways")
    route = testbed.host(client).run_expect([0], "ip -4 route show default").stdout
    assert route.split()[:3] == ["default", "via", testbed.address(gateway, "lan")]


def test_wan_server_has_no_route_to_lan(testbed):
    """Replies to a LAN source can only find their way back through the gateway's NAT."""
    server = testbed.one("wan_servers")
    client = testbed.one("lan_clients")
    result = testbed.host(server).run("ip -4 route get %s", testbed.address(client, "lan"))
    assert result.rc != 0 and "unreachable" in result.stderr.lower(), result.stdout


def test_rules_are_loaded(testbed):
    """The owned ruleset is in the kernel, with the masquerade and the port forwards."""
    host = testbed.host(testbed.one("gateways"))
    if BACKEND == "iptables":
        nat = host.run_expect([0], "iptables -w -t nat -S").stdout.splitlines()
        assert nat.count("-A POSTROUTING -j IPMASQ-POSTROUTING") == 1, nat
        assert nat.count("-A PREROUTING -j IPMASQ-PREROUTING") == 1, nat
        assert any(line.startswith("-A IPMASQ-POSTROUTING") and "MASQUERADE" in line for line in nat), nat
        assert any(line.startswith("-A IPMASQ-PREROUTING") and "DNAT" in line for line in nat), nat
        assert host.run("nft list table inet ipmasq").rc != 0, "iptables backend, yet an ipmasq nft table"
    else:
        table = host.run_expect([0], "nft list table inet ipmasq").stdout
        assert "masquerade" in table and "dnat" in table, table
    assert host.service("ipmasq.service").is_enabled


def test_sysctls(testbed):
    host = testbed.host(testbed.one("gateways"))
    assert host.sysctl("net.ipv4.ip_forward") == 1
    assert host.sysctl("net.netfilter.nf_conntrack_max") == CONNTRACK_MAX
    assert CONNTRACK_TIMEOUTS, "the scenario sets no ipmasq_conntrack_timeouts to check"
    for key, seconds in CONNTRACK_TIMEOUTS.items():
        assert host.sysctl(TIMEOUT_SYSCTLS[key]) == int(seconds), key


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_lan_traffic_leaves_with_gateway_wan_address(testbed, proto):
    gateway = testbed.one("gateways")
    client = testbed.one("lan_clients")
    server = testbed.one("wan_servers")
    with testbed.echo_server(server, **{proto: [ECHO_PORT]}):
        answered_by, peer, _port = testbed.reply(client, proto, testbed.address(server, "wan"), ECHO_PORT)
    assert (answered_by, peer) == (server, testbed.address(gateway, "wan"))


@pytest.mark.parametrize("proto, port, to_port, to_address", _forward_cases())
def test_port_forward_reaches_lan_server(testbed, proto, port, to_port, to_address):
    """The WAN client reaches the LAN server through the gateway's WAN address, unmasqueraded.

    The forward counters see the forwarded packets pass: the control for the drop test below.
    """
    gateway = testbed.one("gateways")
    client = testbed.one("wan_clients")
    target = _owner_of(testbed, to_address)
    client_address = testbed.address(client, "wan")
    with testbed.echo_server(target, **{proto: [to_port]}), \
            testbed.forward_counter(gateway, client_address, to_address, proto, to_port) as counter:
        answered_by, peer, _port = testbed.reply(client, proto, testbed.address(gateway, "wan"), port)
        arrived, passed = counter.read()
    assert (answered_by, peer) == (target, client_address)
    assert arrived >= 1 and passed == arrived, "forward hook: %d arrived, %d passed" % (arrived, passed)


@pytest.mark.parametrize("proto, port, to_port, to_address", _forward_cases(hairpin_only=True))
def test_hairpin_from_lan_reaches_lan_server(testbed, proto, port, to_port, to_address):
    """A LAN client using the public address and port lands on the LAN server."""
    gateway = testbed.one("gateways")
    client = testbed.one("lan_clients")
    target = _owner_of(testbed, to_address)
    with testbed.echo_server(target, **{proto: [to_port]}):
        answered_by, _peer, _port = testbed.reply(client, proto, testbed.address(gateway, "wan"), port)
    assert answered_by == target


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_wan_client_cannot_reach_lan_directly(testbed, proto):
    """Unsolicited WAN->LAN traffic is dropped, although the WAN client routes the LAN via the gateway.

    The LAN server listens, the probe times out, and the gateway's forward hook counted the
    packets arriving and none passing its filter chains: the gateway dropped them.
    """
    gateway = testbed.one("gateways")
    client = testbed.one("wan_clients")
    target = testbed.one("lan_servers")
    target_address = testbed.address(target, "lan")
    route = testbed.host(client).run_expect([0], "ip -4 route get %s", target_address).stdout
    assert "via %s " % testbed.address(gateway, "wan") in route, route
    with testbed.echo_server(target, **{proto: [ECHO_PORT]}), testbed.forward_counter(
            gateway, testbed.address(client, "wan"), target_address, proto, ECHO_PORT) as counter:
        assert counter.read() == (0, 0)
        testbed.blocked(client, proto, target_address, ECHO_PORT)
        arrived, passed = counter.read()
    assert arrived >= 1 and passed == 0, "forward hook: %d arrived, %d passed" % (arrived, passed)


def test_static_nat_publishes_the_inside_host_and_it_leaves_as_its_address(testbed):
    """1:1 NAT: the WAN client reaches the inside host through the external address on two
    unrelated ports, unmasqueraded; the inside host's own connections leave as the external
    address, while another LAN host still leaves as the gateway's address."""
    assert STATIC_NAT, "the scenario sets no ipmasq_static_nat to check"
    gateway = testbed.one("gateways")
    wanclient = testbed.one("wan_clients")
    lanclient = testbed.one("lan_clients")
    for entry in STATIC_NAT:
        inside = _owner_of(testbed, entry["internal"])
        with testbed.echo_server(inside, tcp=[7201], udp=[7333]):
            for proto, port in (("tcp", 7201), ("udp", 7333)):
                answered_by, peer, _port = testbed.reply(wanclient, proto, entry["external"], port)
                assert (answered_by, peer) == (inside, testbed.address(wanclient, "wan"))
        with testbed.echo_server(wanclient, tcp=[ECHO_PORT]):
            _server, peer, _port = testbed.reply(inside, "tcp", testbed.address(wanclient, "wan"),
                                                 ECHO_PORT)
            assert peer == entry["external"]
            _server, peer, _port = testbed.reply(lanclient, "tcp",
                                                 testbed.address(wanclient, "wan"), ECHO_PORT)
            assert peer == testbed.address(gateway, "wan")


def test_connection_limit_refuses_one_hosts_next_connection_only(testbed):
    """MAXCON: a LAN host that holds ipmasq_client_connection_limit connections through the
    gateway is refused the next one; another LAN host still connects."""
    assert CONNECTION_LIMIT, "the scenario sets no ipmasq_client_connection_limit to check"
    gateway = testbed.host(testbed.one("gateways"))
    client, other = testbed.one("lan_clients"), testbed.one("lan_servers")
    # the WAN client routes everything through the gateway, also what the static NAT's
    # inside host (the LAN server here) sends as its external address
    server = testbed.one("wan_clients")
    address = testbed.address(server, "wan")
    # earlier tests' flows of this client (UDP ones stay tracked for a while) count too
    gateway.run("conntrack -D -s %s", testbed.address(client, "lan"))
    holder = testbed.host(client)
    unit = "testbed-hold-%d" % os.getpid()
    with testbed.echo_server(server, tcp=[ECHO_PORT]):
        holder.run_expect([0], "systemd-run --unit=%s --collect --property=RuntimeMaxSec=90 "
                          "/usr/bin/python3 -c %s %s %s %s /run/%s.out", unit, HOLD, address,
                          str(ECHO_PORT), str(CONNECTION_LIMIT + 1), unit)
        try:
            words = ""
            for _attempt in range(100):
                words = holder.run("cat /run/%s.out", unit).stdout.split()
                if words[-1:] == ["held"]:
                    break
                time.sleep(0.2)
            assert words == ["ok"] * CONNECTION_LIMIT + ["refused", "held"], words
            answered_by, _peer, _port = testbed.reply(other, "tcp", address, ECHO_PORT)
            assert answered_by == server
        finally:
            holder.run("systemctl stop %s", unit)
