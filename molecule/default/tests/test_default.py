"""The default scenario's test bed: LAN client - gateway - WAN server, all booted and wired."""

import os

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

ALL = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

ECHO_PORT = 7001


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
