"""A fleet converged by playbooks/site.yml: each gateway holds the rules of its own host_vars.

Every expectation comes from the scenario's inventory (the ipmasq_* variables of each gateway),
none is written here. Each gateway is checked for its backend, its masquerade or SNAT rule, its
own port forwards, the absence of every other gateway's port forwards, and the final drop of the
forward chain, which only ipmasq_inbound_policy=drop may add. Traffic through each gateway
shows the rules at work: its LAN client's connection reaches the WAN host from the masquerade
or SNAT address, and the WAN host reaches the LAN client only with inbound policy accept.
"""

import os
import re

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

RUNNER = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
GATEWAYS = RUNNER.get_hosts("gateways")
ECHO_PORT = 7001
OWN_CHAINS = {"nat": ["IPMASQ-PREROUTING", "IPMASQ-POSTROUTING"], "filter": ["IPMASQ-FORWARD"]}
BUILTIN_CHAIN = {
    "IPMASQ-PREROUTING": "PREROUTING",
    "IPMASQ-POSTROUTING": "POSTROUTING",
    "IPMASQ-FORWARD": "FORWARD",
}


def _settings(name):
    """The gateway's variables, with the role defaults for those the inventory leaves out."""
    variables = RUNNER.get_variables(name)
    return {
        "backend": variables["ipmasq_backend"],
        "wan": variables.get("ipmasq_wan_interface", "ppp0"),
        "lans": variables.get("ipmasq_lan_networks", ["192.168.10.0/24"]),
        "snat": variables.get("ipmasq_snat_address", ""),
        "policy": variables.get("ipmasq_inbound_policy", "drop"),
        "forwards": variables.get("ipmasq_port_forwards", []),
    }


def _protocols(forward):
    return ["tcp", "udp"] if forward["protocol"] == "tcp_udp" else [forward["protocol"]]


def _forward_patterns(backend, wan, forward, to_address=None):
    """One regex per protocol that matches the forward's DNAT in the backend's listing.

    `to_address` None matches the forward's own target; ".*" matches any target.
    """
    port = str(forward["port"])
    to_port = str(forward.get("to_port") or "")
    target = re.escape(forward["to_address"]) if to_address is None else to_address
    patterns = []
    for proto in _protocols(forward):
        if backend == "nftables":
            # A single port is a map element, a range a rule of its own.
            element = r'"%s" \. %s \. %s\b.*: %s \. %s\b' % (
                re.escape(wan), proto, re.escape(port), target, re.escape(to_port or port))
            rule = r'iifname "%s" %s dport %s dnat ip to %s%s' % (
                re.escape(wan), proto, re.escape(port), target,
                (":" + re.escape(to_port)) if to_port else r"(\s|$)")
            patterns.append("(%s)|(%s)" % (element, rule))
        else:
            rule = r"-A IPMASQ-PREROUTING -i %s -p %s .*--dport %s .*-j DNAT --to-destination %s%s" % (
                re.escape(wan), proto, re.escape(port.replace("-", ":")), target,
                (":" + re.escape(to_port)) if to_port else r"(\s|$)")
            patterns.append(rule)
    return patterns


def _nat_listing(testbed, name, backend):
    """The gateway's owned NAT rules (port forwards, masquerade, SNAT) as text."""
    if backend == "nftables":
        return testbed.nft_listing(name)
    return testbed.host(name).run_expect([0], "iptables -w -t nat -S").stdout


def _forward_chain(testbed, name, backend):
    """The owned forward chain's rules, one per line, in order."""
    if backend == "nftables":
        text = testbed.nft_listing(name, "chain inet ipmasq forward")
        return [line.strip() for line in text.splitlines()
                if line.strip() and not line.strip().startswith(("table", "chain", "type", "}"))]
    text = testbed.host(name).run_expect([0], "iptables -w -S IPMASQ-FORWARD").stdout
    return [line for line in text.splitlines() if line.startswith("-A ")]


@pytest.mark.parametrize("name", GATEWAYS)
def test_backend_is_the_configured_one(testbed, name):
    """nftables: our table and no IPMASQ-* chains; iptables: the chains, one jump each, no table."""
    host = testbed.host(name)
    backend = _settings(name)["backend"]
    has_table = host.run("nft list table inet ipmasq").rc == 0
    listings = {table: host.run_expect([0], "iptables -w -t %s -S" % table).stdout.splitlines()
                for table in OWN_CHAINS}
    if backend == "nftables":
        assert has_table, "%s: no table inet ipmasq" % name
        for table, lines in listings.items():
            assert not [line for line in lines if "IPMASQ-" in line], "%s: IPMASQ-* chains in %s" % (name, table)
    else:
        assert backend == "iptables"
        assert not has_table, "%s: iptables backend, yet a table inet ipmasq" % name
        for table, chains in OWN_CHAINS.items():
            for chain in chains:
                assert "-N %s" % chain in listings[table], "%s: no chain %s" % (name, chain)
                jumps = [line for line in listings[table] if line.endswith("-j %s" % chain)]
                assert jumps == ["-A %s -j %s" % (BUILTIN_CHAIN[chain], chain)], jumps


@pytest.mark.parametrize("name", GATEWAYS)
def test_source_nat_matches_the_variables(testbed, name):
    """Masquerade, or SNAT to ipmasq_snat_address, for each LAN network and nothing else."""
    settings = _settings(name)
    text = _nat_listing(testbed, name, settings["backend"])
    wan = re.escape(settings["wan"])
    for lan in settings["lans"]:
        source = re.escape(lan)
        if settings["backend"] == "nftables":
            masquerade = r'ip saddr %s oifname "%s" masquerade' % (source, wan)
            snat = r'ip saddr %s oifname "%s" snat ip to %s' % (source, wan, re.escape(settings["snat"]))
        else:
            masquerade = r"-A IPMASQ-POSTROUTING -s %s -o %s -j MASQUERADE" % (source, wan)
            snat = r"-A IPMASQ-POSTROUTING -s %s -o %s -j SNAT --to-source %s" % (
                source, wan, re.escape(settings["snat"]))
        wanted, unwanted = (snat, masquerade) if settings["snat"] else (masquerade, snat)
        assert re.search(wanted, text), "%s: no %r in\n%s" % (name, wanted, text)
        assert not re.search(unwanted, text), "%s: unexpected %r in\n%s" % (name, unwanted, text)
    kind = "snat" if settings["snat"] else "masquerade"
    other = "MASQUERADE" if settings["snat"] else "SNAT"
    if settings["backend"] == "nftables":
        other = other.lower() + " "
    assert other not in text, "%s uses %s, yet the ruleset has %r" % (name, kind, other.strip())


@pytest.mark.parametrize("name", GATEWAYS)
def test_own_port_forwards_are_present(testbed, name):
    settings = _settings(name)
    assert settings["forwards"], "%s: the scenario gives every gateway a port forward" % name
    text = _nat_listing(testbed, name, settings["backend"])
    for forward in settings["forwards"]:
        for pattern in _forward_patterns(settings["backend"], settings["wan"], forward):
            assert re.search(pattern, text, re.MULTILINE), "%s: %r not found in\n%s" % (name, pattern, text)


@pytest.mark.parametrize("name", GATEWAYS)
def test_other_gateways_port_forwards_are_absent(testbed, name):
    settings = _settings(name)
    text = _nat_listing(testbed, name, settings["backend"])
    for other in GATEWAYS:
        if other == name:
            continue
        for forward in _settings(other)["forwards"]:
            assert forward["to_address"] not in text, "%s forwards to %s of %s" % (name, forward["to_address"], other)
            for pattern in _forward_patterns(settings["backend"], settings["wan"], forward, to_address=".*"):
                assert not re.search(pattern, text, re.MULTILINE), "%s has %s's forward %r" % (name, other, pattern)


@pytest.mark.parametrize("name", GATEWAYS)
def test_final_drop_only_with_inbound_policy_drop(testbed, name):
    settings = _settings(name)
    rules = _forward_chain(testbed, name, settings["backend"])
    if settings["backend"] == "nftables":
        drop = 'iifname "%s" drop' % settings["wan"]
    else:
        drop = "-A IPMASQ-FORWARD -i %s -j DROP" % settings["wan"]
    if settings["policy"] == "drop":
        assert rules and rules[-1] == drop, "%s: forward chain does not end with %r: %r" % (name, drop, rules)
    else:
        assert settings["policy"] == "accept"
        assert not [rule for rule in rules if rule.split()[-1] in ("drop", "DROP")], (
            "%s: inbound policy accept, yet a drop: %r" % (name, rules))


def _lan_client(testbed, gateway):
    """(the LAN client on `gateway`'s LAN, that client's address there)."""
    lans = set(testbed.variables(gateway)["testbed_addresses"]) - {"wan"}
    found = [(client, testbed.address(client, lan)) for client in testbed.names("lan_clients")
             for lan in lans if lan in testbed.variables(client)["testbed_addresses"]]
    assert len(found) == 1, "expected one LAN client behind %s, found %r" % (gateway, found)
    return found[0]


@pytest.mark.parametrize("name", GATEWAYS)
def test_lan_traffic_leaves_from_the_masquerade_or_snat_address(testbed, name):
    """The WAN host sees the LAN client's connection come from the gateway's WAN address
    (masquerade) or from ipmasq_snat_address."""
    settings = _settings(name)
    wan_address = testbed.address(name, "wan")
    if settings["snat"]:
        assert settings["snat"] != wan_address, (
            "%s: SNAT to the WAN address itself would look like masquerade" % name)
    client, _client_address = _lan_client(testbed, name)
    server = testbed.one("wan_hosts")
    with testbed.echo_server(server, tcp=[ECHO_PORT]):
        answered_by, peer, _port = testbed.reply(client, "tcp", testbed.address(server, "wan"), ECHO_PORT)
    assert (answered_by, peer) == (server, settings["snat"] or wan_address)


@pytest.mark.parametrize("name", GATEWAYS)
def test_unsolicited_wan_traffic_follows_the_inbound_policy(testbed, name):
    """The WAN host, which routes the LAN via the gateway, reaches the LAN client with inbound
    policy accept (the client sees the WAN host's own address); with drop the probe times out
    and the gateway's forward hook counted the packets arriving and none passing."""
    settings = _settings(name)
    client, client_address = _lan_client(testbed, name)
    wan_host = testbed.one("wan_hosts")
    wan_host_address = testbed.address(wan_host, "wan")
    with testbed.echo_server(client, tcp=[ECHO_PORT]), testbed.forward_counter(
            name, wan_host_address, client_address, "tcp", ECHO_PORT) as counter:
        if settings["policy"] == "accept":
            answered_by, peer, _port = testbed.reply(wan_host, "tcp", client_address, ECHO_PORT)
            assert (answered_by, peer) == (client, wan_host_address)
        else:
            assert settings["policy"] == "drop"
            testbed.blocked(wan_host, "tcp", client_address, ECHO_PORT)
        arrived, passed = counter.read()
    expected_passed = arrived if settings["policy"] == "accept" else 0
    assert arrived >= 1 and passed == expected_passed, (
        "%s (inbound policy %s): forward hook: %d arrived, %d passed"
        % (name, settings["policy"], arrived, passed))
