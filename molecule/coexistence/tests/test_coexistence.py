"""Foreign firewall rules survive ipmasq: converge, idempotence and removal of our rules.

prepare.yml set up the foreign rules and saved their capture in /root/foreign.before.
Molecule runs these tests twice: with our rules applied, and after side_effect.yml deleted
them and wrote /root/ipmasq.removed. Each run asserts what its phase must show.
"""

CAPTURE = "/usr/local/sbin/foreign-capture"
BEFORE = "/root/foreign.before"
REMOVED_MARKER = "/root/ipmasq.removed"


def _gateway(testbed):
    return testbed.host(testbed.one("gateways"))


def _rules_removed(host):
    return host.file(REMOVED_MARKER).exists


def test_foreign_rules_were_captured(testbed):
    """The saved capture holds every foreign rule, so the comparison below means something."""
    before = _gateway(testbed).file(BEFORE).content_string
    for needle in (
        "table inet foreign",
        "tcp dport 2222 counter accept",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        "-A FORWARD -j DOCKER-USER",
        "-A f2b-sshd -s 203.0.113.99/32 -j REJECT --reject-with icmp-port-unreachable",
        "-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd",
    ):
        assert needle in before, needle


def test_foreign_rules_unchanged(testbed):
    """The capture taken now is byte-identical to the one saved before converge."""
    host = _gateway(testbed)
    now = host.run(CAPTURE)
    assert now.rc == 0, now.stderr
    assert now.stdout == host.file(BEFORE).content_string


def test_owned_table_matches_phase(testbed):
    """Our table is present after converge and gone after side_effect deleted our rules."""
    host = _gateway(testbed)
    ours = host.run("nft list table inet ipmasq")
    if _rules_removed(host):
        assert ours.rc != 0, ours.stdout
        assert "IPMASQ-" not in host.check_output("iptables-save; ip6tables-save")
    else:
        assert ours.rc == 0, ours.stderr
        assert "masquerade" in ours.stdout
        assert "dnat" in ours.stdout


def test_port_forward_beside_docker_nat(testbed):
    """Hairpin: the LAN client reaches itself through the gateway's WAN address, port 8080.

    With our rules the reply comes back via the gateway's LAN address; after removal the
    connection must fail, as only our DNAT led there.
    """
    gateway = testbed.one("gateways")
    client = testbed.one("lan_clients")
    wan_address = testbed.address(gateway, "wan")
    with testbed.echo_server(client, tcp=[7080]):
        if _rules_removed(testbed.host(gateway)):
            assert testbed.probe(client, "tcp", wan_address, 8080).rc != 0
        else:
            server, peer, _port = testbed.reply(client, "tcp", wan_address, 8080)
            assert server == client
            assert peer == testbed.address(gateway, "lan")
