"""Gateways that share their host with Docker, ufw or firewalld.

prepare.yml started each manager with rules of its own, saved what nat_rules answered in
check mode before any way out (/root/neighbours.check.json), and saved a capture of the
manager's rules (/root/manager.before). Molecule runs these tests twice: after converge
(the gateway role, backend auto), and after side_effect.yml deleted our rules and wrote
/root/ipmasq.removed. Each run asserts what its phase must show, with traffic.
"""

import difflib
import json
import os

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

RUNNER = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
GATEWAYS = RUNNER.get_hosts("gateways")
CAPTURE = "/usr/local/sbin/manager-capture"
WAN_ECHO_PORT = 7000
FORWARD_PORT, CLIENT_PORT = 8080, 7080
DOCKER_PORT = 9080
MANAGER = {"neighbours-docker": "Docker", "neighbours-ufw": "ufw",
           "neighbours-firewalld": "firewalld"}


def _removed(testbed, gateway):
    return testbed.host(gateway).file("/root/ipmasq.removed").exists


def _client(testbed, gateway):
    return testbed.variables(gateway)["testbed_client"]


def _wan(testbed):
    return testbed.one("wan_hosts")


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_before_any_way_out_the_module_refused_what_would_not_carry(testbed, gateway):
    """In check mode, before any way out: under Docker's and ufw's FORWARD DROP nftables is
    refused and auto takes iptables; under firewalld's reject every backend is refused."""
    saved = json.loads(testbed.host(gateway).file("/root/neighbours.check.json").content_string)
    refused = dict((backend, msg) for backend, (msg, _chosen) in saved.items())
    assert refused["nftables"].startswith("nothing was changed: a foreign forward filter"), saved
    if MANAGER[gateway] == "firewalld":
        assert "table inet firewalld chain filter_FORWARD (firewalld)" in refused["nftables"]
        assert "a firewalld policy that lets it through" in refused["nftables"]
        assert refused["iptables"] and "no backend would carry the traffic" in refused["auto"]
    else:
        assert "table ip filter chain FORWARD (%s) drops it by its policy (drop)" % (
            MANAGER[gateway]) in refused["nftables"], refused["nftables"]
        assert "backend: iptables (or auto)" in refused["nftables"]
        assert not refused["iptables"] and not refused["auto"], saved
        assert saved["auto"][1] == "iptables", saved


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_the_managers_rules_are_byte_identical(testbed, gateway):
    host = testbed.host(gateway)
    before = host.file("/root/manager.before").content_string
    assert MANAGER[gateway] != "Docker" or "-A DOCKER -d 172.17.0.2/32" in before
    assert MANAGER[gateway] != "ufw" or "-A ufw-user-input -p tcp -m tcp --dport 2222" in before
    assert MANAGER[gateway] != "firewalld" or "table inet firewalld" in before
    now = host.run(CAPTURE)
    assert now.rc == 0, now.stderr
    assert now.stdout == before, "\n".join(difflib.unified_diff(
        before.splitlines(), now.stdout.splitlines(), "before", "now", lineterm=""))


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_auto_took_the_backend_that_works_there(testbed, gateway):
    host = testbed.host(gateway)
    table = host.run("nft list table inet ipmasq").rc == 0
    chains = "IPMASQ-" in host.check_output("iptables-save")
    if _removed(testbed, gateway):
        assert not table and not chains
    elif testbed.variables(gateway)["testbed_backend"] == "nftables":
        assert table and not chains
    else:
        assert chains and not table


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_lan_client_reaches_the_wan_through_masquerade(testbed, gateway):
    client, wan = _client(testbed, gateway), _wan(testbed)
    with testbed.echo_server(wan, tcp=[WAN_ECHO_PORT]):
        if _removed(testbed, gateway):
            # without our masquerade nothing of the LAN gets an answer from the WAN
            assert testbed.probe(client, "tcp", testbed.address(wan, "wan"), WAN_ECHO_PORT).rc != 0
        else:
            _server, peer, _port = testbed.reply(client, "tcp", testbed.address(wan, "wan"),
                                                 WAN_ECHO_PORT)
            assert peer == testbed.address(gateway, "wan")


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_the_port_forward_answers(testbed, gateway):
    client, wan = _client(testbed, gateway), _wan(testbed)
    with testbed.echo_server(client, tcp=[CLIENT_PORT]):
        target = testbed.address(gateway, "wan")
        if _removed(testbed, gateway):
            assert testbed.probe(wan, "tcp", target, FORWARD_PORT).rc != 0
        else:
            server, peer, _port = testbed.reply(wan, "tcp", target, FORWARD_PORT)
            assert (server, peer) == (client, testbed.address(wan, "wan"))


def test_the_docker_published_port_still_answers(testbed):
    gateway = "neighbours-docker"
    assert "web" in testbed.host(gateway).check_output("docker ps --format '{{.Names}}'")
    url = "http://%s:%d/" % (testbed.address(gateway, "wan"), DOCKER_PORT)
    page = testbed.host(_wan(testbed)).run("curl --silent --max-time 5 %s" % url)
    assert page.rc == 0 and page.stdout.strip() == "docker web on %s" % gateway, page.stderr


def test_a_drop_in_docker_user_still_blocks_its_host(testbed):
    """With our rules in, a DROP an admin puts in DOCKER-USER stops the host it names: our
    iptables jump comes after DOCKER-USER."""
    gateway = "neighbours-docker"
    if _removed(testbed, gateway):
        pytest.skip("our rules are removed in this phase: the LAN is blocked anyway")
    host, client, wan = testbed.host(gateway), _client(testbed, gateway), _wan(testbed)
    rule = "-s %s -j DROP" % testbed.address(client, "lan1")
    with testbed.echo_server(wan, tcp=[WAN_ECHO_PORT]):
        testbed.reply(client, "tcp", testbed.address(wan, "wan"), WAN_ECHO_PORT)
        host.run_expect([0], "iptables -w -I DOCKER-USER %s" % rule)
        try:
            testbed.blocked(client, "tcp", testbed.address(wan, "wan"), WAN_ECHO_PORT)
        finally:
            host.run_expect([0], "iptables -w -D DOCKER-USER %s" % rule)
        testbed.reply(client, "tcp", testbed.address(wan, "wan"), WAN_ECHO_PORT)
