"""model.py: validation (every error names entry, field and value), canonical order, dicts."""
import pytest
from hypothesis import given, settings

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import argspec, model

from nat_helpers import configs, ruleset_of

PF = {"in_interface": "eth0", "port": 8080, "to_address": "192.168.10.5"}
FWD = {"in_interface": "ppp0"}


def pf(**kw):
    return {"port_forwards": [dict(PF, **kw)]}


def masq(**kw):
    return {"masquerade": [dict({"out_interface": "ppp0"}, **kw)]}


def snat(**kw):
    return {"snat": [dict({"out_interface": "ppp0", "to_address": "203.0.113.10"}, **kw)]}


def fwd(**kw):
    return {"forward": [dict(FWD, **kw)]}


def inp(**kw):
    return {"input": [dict({"in_interface": "ppp0", "port": 22}, **kw)]}


def static(**kw):
    return {"static_nat": [dict({"interface": "ppp0", "external": "203.0.113.5",
                                 "internal": "192.168.10.5"}, **kw)]}


def npt(**kw):
    return {"npt": [dict({"interface": "ppp0", "internal": "fd00:10::/64",
                          "external": "2001:db8:10::/64"}, **kw)]}


def limit(**kw):
    return {"connection_limits": [dict({"source": "192.168.10.0/24", "per_address": 128}, **kw)]}


def _error(config, partial=False):
    with pytest.raises(model.ConfigError) as info:
        model.build_config(config, partial=partial)
    return str(info.value)


# (config, entry.field, the bad value: the message ends "(got <its repr>)")
INVALID = [
    # networks
    pytest.param(masq(source="192.168.1.300/24"), "masquerade[0].source", "192.168.1.300/24",
                 id="cidr-invalid-octet"),
    pytest.param(masq(source="office-lan"), "masquerade[0].source", "office-lan",
                 id="cidr-not-an-address"),
    pytest.param(masq(source="192.168.1.0/33"), "masquerade[0].source", "192.168.1.0/33",
                 id="cidr-prefix-too-long"),
    pytest.param(masq(source="192.168.1.1/24"), "masquerade[0].source", "192.168.1.1/24",
                 id="cidr-host-bits"),
    pytest.param(fwd(destination="fd00::1/64"), "forward[0].destination", "fd00::1/64",
                 id="cidr-host-bits-v6"),
    pytest.param(masq(source="0.0.0.0/0"), "masquerade[0].source", "0.0.0.0/0", id="net-v4-slash0"),
    pytest.param(fwd(source="::/0"), "forward[0].source", "::/0", id="net-v6-slash0"),
    pytest.param(pf(source="0.0.0.0/0"), "port_forwards[0].source", "0.0.0.0/0", id="pf-slash0"),
    # ports
    pytest.param(pf(port=0), "port_forwards[0].port", 0, id="port-0"),
    pytest.param(pf(port=65536), "port_forwards[0].port", 65536, id="port-65536"),
    pytest.param(pf(port=70000), "port_forwards[0].port", 70000, id="port-70000"),
    pytest.param(pf(port="10-5"), "port_forwards[0].port", "10-5", id="port-reversed"),
    pytest.param(pf(port="0-10"), "port_forwards[0].port", "0-10", id="port-range-from-0"),
    pytest.param(pf(port="http"), "port_forwards[0].port", "http", id="port-name"),
    pytest.param(pf(port=True), "port_forwards[0].port", True, id="port-bool"),
    pytest.param(pf(port="1-2-3"), "port_forwards[0].port", "1-2-3", id="port-three-parts"),
    pytest.param(pf(to_port=0), "port_forwards[0].to_port", 0, id="to-port-0"),
    pytest.param(pf(port="5000-5010", to_port="6000-6005"), "port_forwards[0].to_port",
                 "6000-6005", id="to-port-other-length"),
    pytest.param(pf(port=8080, to_port="80-81"), "port_forwards[0].to_port", "80-81",
                 id="to-port-range-for-one-port"),
    pytest.param(pf(port="5000-5010", to_port="6000-6010"), "port_forwards[0].to_port",
                 "6000-6010", id="to-port-shifted-range"),
    pytest.param(fwd(protocol="tcp", port=70000), "forward[0].port", 70000, id="fwd-port"),
    pytest.param({"helpers": [{"helper": "ftp", "port": 0}]}, "helpers[0].port", 0,
                 id="helper-port"),
    # interfaces
    pytest.param(masq(out_interface="a" * 16), "masquerade[0].out_interface", "a" * 16,
                 id="ifname-16-chars"),
    pytest.param(pf(in_interface="eth 0"), "port_forwards[0].in_interface", "eth 0",
                 id="ifname-space"),
    pytest.param(fwd(in_interface='eth"0'), "forward[0].in_interface", 'eth"0', id="ifname-quote"),
    pytest.param(fwd(out_interface="eth'0"), "forward[0].out_interface", "eth'0",
                 id="ifname-apostrophe"),
    pytest.param(snat(out_interface="eth/0"), "snat[0].out_interface", "eth/0", id="ifname-slash"),
    pytest.param(masq(out_interface="eth*"), "masquerade[0].out_interface", "eth*",
                 id="ifname-wildcard"),
    pytest.param(masq(out_interface="+"), "masquerade[0].out_interface", "+",
                 id="ifname-pattern-alone"),
    pytest.param(masq(out_interface="p+p"), "masquerade[0].out_interface", "p+p",
                 id="ifname-pattern-plus-inside"),
    pytest.param(masq(out_interface="ppp++"), "masquerade[0].out_interface", "ppp++",
                 id="ifname-pattern-two-plus"),
    pytest.param(masq(out_interface="ppp?"), "masquerade[0].out_interface", "ppp?",
                 id="ifname-pattern-question-mark"),
    pytest.param(fwd(in_interface="p*p+"), "forward[0].in_interface", "p*p+",
                 id="ifname-pattern-star-inside"),
    pytest.param(masq(out_interface="abcdefghijklmn++"[:15] + "+"), "masquerade[0].out_interface",
                 "abcdefghijklmn++"[:15] + "+", id="ifname-pattern-16-chars"),
    pytest.param(pf(in_interface="ppp+", hairpin=True), "port_forwards[0].hairpin", True,
                 id="hairpin-on-a-pattern"),
    pytest.param(masq(out_interface=".."), "masquerade[0].out_interface", "..", id="ifname-dotdot"),
    pytest.param(masq(out_interface=None), "masquerade[0].out_interface", None,
                 id="ifname-missing"),
    pytest.param(pf(in_interface=""), "port_forwards[0].in_interface", "",
                 id="ifname-empty-required"),
    # choices
    pytest.param(pf(protocol="sctp"), "port_forwards[0].protocol", "sctp", id="pf-protocol"),
    pytest.param(fwd(protocol="gre"), "forward[0].protocol", "gre", id="fwd-protocol"),
    pytest.param(fwd(action="masquerade"), "forward[0].action", "masquerade", id="fwd-action"),
    pytest.param(fwd(ct_state=["established", "bogus"]), "forward[0].ct_state", "bogus",
                 id="ct-state-unknown"),
    pytest.param(fwd(ct_state=["new", "new"]), "forward[0].ct_state", ["new", "new"],
                 id="ct-state-twice"),
    pytest.param(fwd(ct_state={"new": 1}), "forward[0].ct_state", {"new": 1},
                 id="ct-state-not-list"),
    pytest.param(pf(hairpin="maybe"), "port_forwards[0].hairpin", "maybe", id="hairpin-not-bool"),
    pytest.param(pf(hairpin=[True]), "port_forwards[0].hairpin", [True], id="hairpin-a-list"),
    pytest.param(masq(comment=["x"]), "masquerade[0].comment", ["x"], id="comment-a-list"),
    pytest.param(masq(out_interface={"a": 1}), "masquerade[0].out_interface", {"a": 1},
                 id="ifname-a-dict"),
    # address families
    pytest.param(snat(source="10.0.0.0/8", to_address="2001:db8::1"), "snat[0].source",
                 {"source": "10.0.0.0/8", "to_address": "2001:db8::1"}, id="snat-v4-source-v6-to"),
    pytest.param(fwd(source="10.0.0.0/8", destination="2001:db8::/32"), "forward[0].source",
                 {"source": "10.0.0.0/8", "destination": "2001:db8::/32"},
                 id="fwd-v4-source-v6-destination"),
    pytest.param(pf(to_address="192.168.10.5", source="2001:db8::/32"),
                 "port_forwards[0].to_address",
                 {"to_address": "192.168.10.5", "source": "2001:db8::/32"},
                 id="pf-v4-to-v6-source"),
    pytest.param(snat(to_address="203.0.113.10-2001:db8::1"), "snat[0].to_address",
                 "203.0.113.10-2001:db8::1", id="snat-range-mixed"),
    # unicast targets
    pytest.param(pf(to_address="224.0.0.1"), "port_forwards[0].to_address", "224.0.0.1",
                 id="to-multicast"),
    pytest.param(pf(to_address="ff02::1"), "port_forwards[0].to_address", "ff02::1",
                 id="to-multicast-v6"),
    pytest.param(pf(to_address="0.0.0.0"), "port_forwards[0].to_address", "0.0.0.0",
                 id="to-unspecified"),
    pytest.param(snat(to_address="::"), "snat[0].to_address", "::", id="to-unspecified-v6"),
    pytest.param(pf(to_address="127.0.0.1"), "port_forwards[0].to_address", "127.0.0.1",
                 id="to-loopback"),
    pytest.param(snat(to_address="::1"), "snat[0].to_address", "::1", id="to-loopback-v6"),
    pytest.param(pf(to_address="169.254.1.1"), "port_forwards[0].to_address", "169.254.1.1",
                 id="to-link-local"),
    pytest.param(snat(to_address="255.255.255.255"), "snat[0].to_address", "255.255.255.255",
                 id="to-broadcast"),
    pytest.param(pf(to_address="web.example.org"), "port_forwards[0].to_address",
                 "web.example.org", id="to-not-an-ip"),
    pytest.param(pf(to_address="192.168.10.0/24"), "port_forwards[0].to_address",
                 "192.168.10.0/24", id="to-a-network"),
    pytest.param(snat(to_address="203.0.113.20-203.0.113.10"), "snat[0].to_address",
                 "203.0.113.20-203.0.113.10", id="snat-reversed-range"),
    pytest.param(snat(to_address="203.0.113.20-224.0.0.1"), "snat[0].to_address", "224.0.0.1",
                 id="snat-range-multicast-end"),
    pytest.param(snat(to_address=None), "snat[0].to_address", None, id="snat-to-missing"),
    # comments
    pytest.param(masq(comment="two\nlines"), "masquerade[0].comment", "two\nlines",
                 id="comment-newline"),
    pytest.param(masq(comment="tab\there"), "masquerade[0].comment", "tab\there", id="comment-tab"),
    pytest.param(pf(comment="nul\x00"), "port_forwards[0].comment", "nul\x00", id="comment-nul"),
    pytest.param(fwd(comment="del\x7f"), "forward[0].comment", "del\x7f", id="comment-del"),
    pytest.param(snat(comment='say "hi"'), "snat[0].comment", 'say "hi"', id="comment-dquote"),
    pytest.param(masq(comment="back\\slash"), "masquerade[0].comment", "back\\slash",
                 id="comment-bslash"),
    pytest.param(masq(comment="é" * 65), "masquerade[0].comment", "é" * 65,
                 id="comment-130-bytes-65-chars"),
    # (a number is text, as for Ansible's str options: test_conversions_of_ansible_option_types)
    pytest.param(masq(comment=True), "masquerade[0].comment", True, id="comment-not-text"),
    # helpers
    pytest.param({"helpers": [{"helper": "http", "port": 80}]}, "helpers[0].helper", "http",
                 id="helper-unknown"),
    pytest.param({"helpers": [{"helper": "tftp", "protocol": "tcp", "port": 69}]},
                 "helpers[0].protocol", "tcp", id="helper-protocol"),
    pytest.param({"helpers": [{"helper": "ftp"}]}, "helpers[0].port", None, id="helper-no-port"),
    # forward ports
    pytest.param(fwd(port=22), "forward[0].port", 22, id="fwd-port-without-protocol"),
    pytest.param(fwd(protocol="icmp", port=22), "forward[0].port", 22, id="fwd-port-with-icmp"),
    pytest.param(fwd(protocol="icmp", source="fd00::/8"), "forward[0].protocol", "icmp",
                 id="icmp-with-v6-source"),
    pytest.param(fwd(protocol="icmp", destination="2001:db8::/32"), "forward[0].protocol", "icmp",
                 id="icmp-with-v6-destination"),
    pytest.param(fwd(protocol="icmpv6", source="10.0.0.0/8"), "forward[0].protocol", "icmpv6",
                 id="icmpv6-with-v4-source"),
    # input
    pytest.param(inp(in_interface=None), "input[0].in_interface", None, id="input-no-interface"),
    pytest.param(inp(port=None), "input[0].port", None, id="input-no-port"),
    pytest.param(inp(port=70000), "input[0].port", 70000, id="input-port-70000"),
    pytest.param(inp(protocol="icmp"), "input[0].port", 22, id="input-icmp-with-port"),
    pytest.param(inp(protocol="icmpv6", port=None), "input[0].protocol", "icmpv6",
                 id="input-icmpv6-is-always-in"),
    pytest.param(inp(protocol="gre"), "input[0].protocol", "gre", id="input-protocol"),
    pytest.param(inp(protocol="icmp", port=None, source="2001:db8::/32"), "input[0].source",
                 "2001:db8::/32", id="input-icmp-v6-source"),
    pytest.param(inp(source="198.51.100.1/24"), "input[0].source", "198.51.100.1/24",
                 id="input-source-host-bits"),
    pytest.param(inp(in_interface="ppp0 wan"), "input[0].in_interface", "ppp0 wan",
                 id="input-interface-space"),
    # static_nat
    pytest.param(static(interface=None), "static_nat[0].interface", None, id="static-no-interface"),
    pytest.param(static(interface="ppp*"), "static_nat[0].interface", "ppp*",
                 id="static-interface-star"),
    pytest.param(static(external=None), "static_nat[0].external", None, id="static-no-external"),
    pytest.param(static(external="203.0.113.300"), "static_nat[0].external", "203.0.113.300",
                 id="static-external-not-an-address"),
    pytest.param(static(external="203.0.113.1/29"), "static_nat[0].external", "203.0.113.1/29",
                 id="static-external-host-bits"),
    pytest.param(static(external="224.0.0.5"), "static_nat[0].external", "224.0.0.5",
                 id="static-external-multicast"),
    pytest.param(static(internal=None), "static_nat[0].internal", None, id="static-no-internal"),
    pytest.param(static(internal="fd00::%eth0"), "static_nat[0].internal", "fd00::%eth0",
                 id="static-internal-zone"),
    pytest.param(static(internal="2001:db8::5"), "static_nat[0].external",
                 {"external": "203.0.113.5", "internal": "2001:db8::5", "source": None},
                 id="static-families-differ"),
    pytest.param(static(external="203.0.113.8/29", internal="192.168.10.0/28"),
                 "static_nat[0].internal", "192.168.10.0/28", id="static-prefix-lengths-differ"),
    pytest.param(static(external="203.0.113.8/29", internal="192.168.10.5"),
                 "static_nat[0].internal", "192.168.10.5", id="static-network-to-address"),
    pytest.param(static(source="10.0.0.1/8"), "static_nat[0].source", "10.0.0.1/8",
                 id="static-source-host-bits"),
    pytest.param(static(source="2001:db8::/32"), "static_nat[0].external",
                 {"external": "203.0.113.5", "internal": "192.168.10.5",
                  "source": "2001:db8::/32"}, id="static-source-family"),
    pytest.param(static(hairpin="sometimes"), "static_nat[0].hairpin", "sometimes",
                 id="static-hairpin-not-bool"),
    pytest.param(static(comment="a\nb"), "static_nat[0].comment", "a\nb", id="static-comment"),
    # npt
    pytest.param(npt(interface="wan 0"), "npt[0].interface", "wan 0", id="npt-interface"),
    pytest.param(npt(internal=None), "npt[0].internal", None, id="npt-no-internal"),
    pytest.param(npt(external=None), "npt[0].external", None, id="npt-no-external"),
    pytest.param(npt(internal="10.0.0.0/8"), "npt[0].internal", "10.0.0.0/8", id="npt-ipv4"),
    pytest.param(npt(external="2001:db8:10::/80"), "npt[0].external", "2001:db8:10::/80",
                 id="npt-longer-than-64"),
    pytest.param(npt(external="2001:db8:10::/56"), "npt[0].external", "2001:db8:10::/56",
                 id="npt-lengths-differ"),
    pytest.param(npt(internal="fd00:10::1/64"), "npt[0].internal", "fd00:10::1/64",
                 id="npt-host-bits"),
    pytest.param(npt(internal="fd00:10::%1/64"), "npt[0].internal", "fd00:10::%1/64",
                 id="npt-zone"),
    # connection_limits
    pytest.param(limit(source=None), "connection_limits[0].source", None, id="limit-no-source"),
    pytest.param(limit(source="192.168.10.1/24"), "connection_limits[0].source",
                 "192.168.10.1/24", id="limit-source-host-bits"),
    pytest.param(limit(per_address=None), "connection_limits[0].per_address", None,
                 id="limit-no-count"),
    pytest.param(limit(per_address=0), "connection_limits[0].per_address", 0, id="limit-zero"),
    pytest.param(limit(per_address=-3), "connection_limits[0].per_address", -3,
                 id="limit-negative"),
    pytest.param(limit(per_address="many"), "connection_limits[0].per_address", "many",
                 id="limit-not-a-number"),
    pytest.param(limit(per_address=True), "connection_limits[0].per_address", True,
                 id="limit-bool"),
    # str.isdigit() is true for these, and int() refuses the first and reads the second
    pytest.param(limit(per_address="\u2080"), "connection_limits[0].per_address", "\u2080",
                 id="limit-subscript-digit"),
    pytest.param(limit(per_address="\u0663"), "connection_limits[0].per_address", "\u0663",
                 id="limit-arabic-indic-digit"),
    pytest.param(pf(port="\u0668\u0660"), "port_forwards[0].port", "\u0668\u0660",
                 id="port-arabic-indic-digits"),
    pytest.param(pf(port="80_80"), "port_forwards[0].port", "80_80", id="port-underscore"),
    pytest.param(pf(port="+80-90"), "port_forwards[0].port", "+80-90", id="port-range-plus"),
    pytest.param(snat(source="10.0.0.0/8", timeouts={"udp": "\u00b2"}),
                 "snat[0].timeouts.udp", "\u00b2", id="timeouts-superscript-digit"),
    pytest.param(limit(per_address=1000001), "connection_limits[0].per_address", 1000001,
                 id="limit-too-many"),
    pytest.param(limit(protocol="icmp"), "connection_limits[0].protocol", "icmp",
                 id="limit-protocol"),
    pytest.param(limit(action="accept"), "connection_limits[0].action", "accept",
                 id="limit-action"),
    # masquerade and snat options
    pytest.param(masq(ports="0-100"), "masquerade[0].ports", "0-100", id="nat-ports-0"),
    pytest.param(masq(ports="2000-1000"), "masquerade[0].ports", "2000-1000",
                 id="nat-ports-reversed"),
    pytest.param(snat(ports="any"), "snat[0].ports", "any", id="nat-ports-word"),
    pytest.param(masq(random_fully="very"), "masquerade[0].random_fully", "very",
                 id="nat-random-fully"),
    pytest.param(snat(persistent=[1]), "snat[0].persistent", [1], id="snat-persistent"),
    pytest.param(masq(source="10.0.0.0/8", timeouts="960"), "masquerade[0].timeouts", "960",
                 id="timeouts-not-a-dict"),
    pytest.param(masq(source="10.0.0.0/8", timeouts={"tcp_establish": 960}),
                 "masquerade[0].timeouts", "tcp_establish", id="timeouts-unknown-key"),
    pytest.param(masq(source="10.0.0.0/8", timeouts={"icmp": 30}), "masquerade[0].timeouts",
                 "icmp", id="timeouts-global-only-key"),
    pytest.param(snat(source="10.0.0.0/8", timeouts={"udp": 0}), "snat[0].timeouts.udp", 0,
                 id="timeouts-zero"),
    pytest.param(snat(source="10.0.0.0/8", timeouts={"udp": "soon"}), "snat[0].timeouts.udp",
                 "soon", id="timeouts-word"),
    pytest.param(masq(source="10.0.0.0/8", timeouts={"udp": 3000000}),
                 "masquerade[0].timeouts.udp", 3000000, id="timeouts-too-long"),
    pytest.param(masq(timeouts={"udp": 30}), "masquerade[0].timeouts", {"udp": 30},
                 id="timeouts-without-source"),
]


# (config, where, what) for a config of the wrong shape
INVALID_STRUCTURE = [
    pytest.param({"nat": []}, "config", "nat", id="unknown-kind"),
    pytest.param({"masquerade": {"out_interface": "ppp0"}}, "config.masquerade", "out_interface",
                 id="kind-not-a-list"),
    pytest.param(["masquerade"], "config", "masquerade", id="config-not-a-dict"),
    pytest.param({"masquerade": ["ppp0"]}, "masquerade[0]", "ppp0", id="entry-not-a-dict"),
    pytest.param(masq(iface="ppp0"), "masquerade[0]", "iface", id="unknown-field"),
    pytest.param(pf(dport=80), "port_forwards[0]", "dport", id="unknown-field-pf"),
    pytest.param(inp(action="drop"), "input[0]", "action", id="unknown-field-input"),
    pytest.param({"masquerade": [{"out_interface": "ppp0", "to_address": "203.0.113.1"}]},
                 "masquerade[0]", "to_address", id="snat-field-on-masquerade"),
]


@pytest.mark.parametrize("config, where, value", INVALID)
def test_invalid_config_names_where_and_what(config, where, value):
    """The bad value is matched in the message's (got ...) part: a bare "0" or "a" would
    also be found in the entry's name or in the message's own words."""
    message = _error(config)
    assert message.startswith(where + ":"), message
    assert message.endswith("(got %r)" % (value,)), message


@pytest.mark.parametrize("config, where, value", INVALID_STRUCTURE)
def test_config_of_the_wrong_shape_names_where_and_what(config, where, value):
    message = _error(config)
    assert message.startswith(where + ":"), message
    assert value in message, message


def test_unknown_field_lists_the_allowed_ones():
    assert "allowed: source, out_interface, comment" in _error(masq(iface="ppp0"))


def test_unknown_kind_lists_the_kinds():
    assert "allowed: masquerade, snat, port_forwards, forward, helpers, input, static_nat, " \
        "npt, connection_limits" in _error({"nat": []})


@pytest.mark.parametrize("config, where, other, values", [
    pytest.param({"static_nat": [static()["static_nat"][0],
                                 dict(static()["static_nat"][0], external="203.0.113.6")]},
                 "static_nat[1].internal", "static_nat[0].internal",
                 ("192.168.10.5", "192.168.10.5"), id="static-same-internal"),
    pytest.param({"static_nat": [dict(static()["static_nat"][0], external="203.0.113.8/29",
                                      internal="192.168.10.8/29"),
                                 dict(static()["static_nat"][0], external="203.0.113.20",
                                      internal="192.168.10.9")]},
                 "static_nat[1].internal", "static_nat[0].internal",
                 ("192.168.10.9", "192.168.10.8/29"), id="static-internal-inside-network"),
    pytest.param({"static_nat": [dict(static()["static_nat"][0], external="203.0.113.8/29",
                                      internal="192.168.10.8/29"),
                                 dict(static()["static_nat"][0], external="203.0.113.9",
                                      internal="192.168.10.30")]},
                 "static_nat[1].external", "static_nat[0].external",
                 ("203.0.113.9", "203.0.113.8/29"), id="static-external-inside-network"),
    pytest.param({"npt": [npt()["npt"][0], dict(npt()["npt"][0], internal="fd00:11::/64")]},
                 "npt[1].external", "npt[0].external",
                 ("2001:db8:10::/64", "2001:db8:10::/64"), id="npt-same-external"),
    pytest.param({"masquerade": [dict(masq(source="10.0.0.0/8")["masquerade"][0],
                                      timeouts={"udp": 30})],
                  "snat": [dict(snat(source="10.0.0.0/8")["snat"][0], out_interface="eth1",
                                timeouts={"udp": 60})]},
                 "snat[0].timeouts", "masquerade[0].timeouts", ("{'udp': 60}", "{'udp': 30}"),
                 id="timeouts-differ-for-a-source"),
])
def test_entries_that_contradict_each_other_name_both(config, where, other, values):
    message = _error(config)
    assert message.startswith(where + ":"), message
    assert other in message, message
    assert message.endswith("(got %r and %r)" % values) or \
        message.endswith("(got %s and %s)" % values), message


def test_a_merged_ruleset_is_checked_across_entries_too():
    """merged adds entries to those on the host: the result is checked as a whole."""
    have = ruleset_of({"masquerade": [{"source": "10.0.0.0/8", "out_interface": "ppp0",
                                       "timeouts": {"udp": 30}}]})
    have["masquerade"] += model.build_config(
        {"masquerade": [{"source": "10.0.0.0/8", "out_interface": "eth1"}]})["masquerade"]
    with pytest.raises(model.ConfigError, match=r"^masquerade \(source 10.0.0.0/8, "
                       r"out_interface (ppp0|eth1)\)\.timeouts: differs"):
        model.check_ruleset(have)


def test_error_names_the_index_of_the_bad_entry():
    config = {"port_forwards": [dict(PF), dict(PF, port=8081), dict(PF, port=8082, to_port=0)]}
    assert _error(config).startswith("port_forwards[2].to_port:")


@pytest.mark.parametrize("config, where, first, fields", [
    pytest.param({"masquerade": [{"source": "10.0.0.0/8", "out_interface": "ppp0"},
                                 {"source": "10.0.0.0/8", "out_interface": "ppp0",
                                  "comment": "again"}]},
                 "masquerade[1]", "masquerade[0]", "source and out_interface", id="masquerade"),
    pytest.param({"snat": [{"out_interface": "eth0", "to_address": "203.0.113.1"},
                           {"out_interface": "eth0", "to_address": "203.0.113.2"}]},
                 "snat[1]", "snat[0]", "source and out_interface", id="snat-same-source-none"),
    pytest.param({"port_forwards": [dict(PF), dict(PF, to_address="192.168.10.6")]},
                 "port_forwards[1]", "port_forwards[0]", "in_interface, protocol and port",
                 id="port-forward"),
    pytest.param({"port_forwards": [dict(PF, protocol="tcp_udp"),
                                    dict(PF, protocol="tcp", to_address="192.168.10.6")]},
                 "port_forwards[1]", "port_forwards[0]", "in_interface, protocol and port",
                 id="tcp_udp-vs-tcp"),
    pytest.param({"port_forwards": [dict(PF, protocol="udp"),
                                    dict(PF, protocol="tcp_udp")]},
                 "port_forwards[1]", "port_forwards[0]", "in_interface, protocol and port",
                 id="udp-vs-tcp_udp"),
    pytest.param({"port_forwards": [dict(PF, port=8080), dict(PF, port="8080")]},
                 "port_forwards[1]", "port_forwards[0]", "in_interface, protocol and port",
                 id="int-vs-str-port"),
    pytest.param({"forward": [dict(FWD, action="drop"), dict(FWD, action="drop", comment="x")]},
                 "forward[1]", "forward[0]", "match and action", id="forward-differs-by-comment"),
    pytest.param({"forward": [dict(FWD, ct_state=["related", "established"]),
                              dict(FWD, ct_state="established,related")]},
                 "forward[1]", "forward[0]", "match and action", id="forward-ct-state-order"),
    pytest.param({"helpers": [{"helper": "ftp", "port": 21},
                              {"helper": "ftp", "port": "21", "protocol": "tcp"}]},
                 "helpers[1]", "helpers[0]", "helper, protocol and port", id="helper"),
    pytest.param({"input": [{"in_interface": "ppp0", "port": 22, "protocol": "tcp_udp"},
                            {"in_interface": "ppp0", "port": "22", "comment": "again"}]},
                 "input[1]", "input[0]", "in_interface, protocol, port and source",
                 id="input-tcp_udp-vs-tcp"),
])
def test_duplicate_identity_names_both_entries_and_the_identity(config, where, first, fields):
    message = _error(config)
    assert message.startswith(where + ": duplicate of " + first), message
    assert fields in message, message


def test_duplicate_identity_names_the_value():
    message = _error({"port_forwards": [dict(PF), dict(PF, to_address="192.168.10.6")]})
    assert "8080" in message and "eth0" in message, message


@pytest.mark.parametrize("entries, values", [
    pytest.param([dict(PF, port="5000-5010"), dict(PF, port=5005)], ("5000-5010", "5005"),
                 id="port-inside-range"),
    pytest.param([dict(PF, port="5000-5010"), dict(PF, port="5010-5020")],
                 ("5000-5010", "5010-5020"), id="ranges-share-an-end"),
    pytest.param([dict(PF, port="5000-5010", protocol="tcp_udp"),
                  dict(PF, port="4990-5000", protocol="udp")], ("4990-5000", "5000-5010"),
                 id="tcp_udp-vs-udp"),
])
def test_overlapping_ports_are_refused_with_both_values(entries, values):
    message = _error({"port_forwards": entries})
    assert message.startswith("port_forwards"), message
    assert "overlap" in message and "eth0" in message, message
    for value in values:
        assert value in message, message


def test_overlapping_ports_error_names_the_entry_and_field():
    message = _error({"port_forwards": [dict(PF, port="5000-5010"), dict(PF, port=5005)]})
    assert "port_forwards[1].port" in message, message


@pytest.mark.parametrize("entries", [
    pytest.param([dict(PF, port="5000-5010"), dict(PF, port=5011)], id="adjacent"),
    pytest.param([dict(PF, port="5000-5010"), dict(PF, port=5005, protocol="udp")],
                 id="other-protocol"),
    pytest.param([dict(PF, port="5000-5010"), dict(PF, port=5005, in_interface="eth1")],
                 id="other-interface"),
])
def test_ports_that_do_not_overlap_are_accepted(entries):
    assert len(model.build_config({"port_forwards": entries})["port_forwards"]) == 2


@pytest.mark.parametrize("comment", [
    pytest.param("next\x85line", id="C1-next-line"),
    pytest.param("csi\x9b", id="C1-csi"),
    pytest.param("line\u2028separator", id="line-separator"),
])
def test_comment_refuses_every_control_character(comment):
    assert _error(masq(comment=comment)).startswith("masquerade[0].comment:")


@pytest.mark.parametrize("config, kind, field", [
    (masq(out_interface="ppp+"), "masquerade", "out_interface"),
    (pf(in_interface="wg+"), "port_forwards", "in_interface"),
    (fwd(in_interface="ppp+", out_interface="eth0.+"), "forward", "out_interface"),
    (inp(in_interface="ppp+"), "input", "in_interface"),
])
def test_interface_patterns_are_accepted(config, kind, field):
    entry = model.build_config(config)[kind][0]
    assert getattr(entry, field).endswith("+")
    assert model.is_pattern(getattr(entry, field))


def test_interface_with_trailing_newline_is_refused():
    assert _error(masq(out_interface="eth0\n")).startswith("masquerade[0].out_interface:")


# ---------------------------------------------------------------- what valid input becomes

def test_defaults_and_normal_forms():
    got = model.build_config({
        "masquerade": [{"source": "192.168.10.0/255.255.255.0", "out_interface": "ppp0"}],
        "snat": [{"out_interface": "eth0", "to_address": "203.0.113.5-203.0.113.5"}],
        "port_forwards": [{"in_interface": "eth0", "port": "5000:5010", "to_address": "fd00::0005",
                           "to_port": "5000-5010"},
                          {"in_interface": "eth0", "port": 8080, "to_address": "192.168.10.5",
                           "to_port": 8080}],
        "forward": [{"ct_state": "related, established"}],
        "helpers": [{"helper": "tftp", "port": 69}],
    })
    assert got["masquerade"] == (model.Masquerade("192.168.10.0/24", "ppp0", None),)
    assert got["snat"] == (model.Snat(None, "eth0", "203.0.113.5", None),)
    assert got["port_forwards"] == (
        model.PortForward("eth0", "tcp", "5000-5010", "fd00::5", None, None, False, None),
        model.PortForward("eth0", "tcp", "8080", "192.168.10.5", None, None, False, None))
    assert got["forward"] == (model.Forward(None, None, None, None, None, None,
                                            ("established", "related"), "accept", None),)
    assert got["helpers"] == (model.Helper("tftp", "udp", "69"),)


def test_ansible_fills_unset_options_with_none():
    """The argument spec hands every suboption over, unset ones as None."""
    got = model.build_config({
        "masquerade": [{"source": None, "out_interface": "ppp0", "comment": None}],
        "port_forwards": [{"in_interface": "eth0", "protocol": None, "port": 80,
                           "to_address": "192.168.1.5", "to_port": None, "source": None,
                           "hairpin": None, "comment": None}],
        "forward": [{"in_interface": None, "out_interface": None, "source": None,
                     "destination": None, "protocol": None, "port": None, "ct_state": None,
                     "action": None, "comment": None}],
        "snat": None,
    })
    assert set(got) == {"masquerade", "port_forwards", "forward"}
    assert got["port_forwards"][0].protocol == "tcp" and got["port_forwards"][0].hairpin is False
    assert got["forward"][0].action == "accept"


def test_conversions_of_ansible_option_types():
    """The argument spec leaves config's entries to the model: it converts as Ansible's
    bool and str option types do."""
    for text, value in (("yes", True), ("on", True), ("1", True), (1, True), ("no", False),
                        ("off", False), ("False", False), (0, False)):
        assert model.build_config(pf(hairpin=text))["port_forwards"][0].hairpin is value
    got = model.build_config({"masquerade": [{"out_interface": 10, "comment": 2024}]})
    assert got["masquerade"] == (model.Masquerade(None, "10", "2024"),)


def test_the_documented_suboptions_are_what_the_model_accepts():
    """argspec.CONFIG_SPEC is the documented shape (test_nat_rules.py checks it against the
    documentation); the module validates entries with the model alone."""
    spec = argspec.CONFIG_SPEC
    assert sorted(spec) == sorted(model.KINDS)
    assert sorted(spec["masquerade"]["options"]) == sorted(model.Masquerade._fields)
    assert sorted(spec["snat"]["options"]) == sorted(model.Snat._fields)
    assert sorted(spec["port_forwards"]["options"]) == sorted(model.PortForward._fields)
    assert sorted(spec["forward"]["options"]) == sorted(model.Forward._fields)
    assert sorted(spec["helpers"]["options"]) == sorted(model.Helper._fields)
    assert sorted(spec["input"]["options"]) == sorted(model.Input._fields)
    assert spec["input"]["options"]["protocol"]["choices"] == list(model.INPUT_PROTOCOLS)
    assert model.build_config(inp())["input"][0].protocol == \
        spec["input"]["options"]["protocol"]["default"]
    assert spec["port_forwards"]["options"]["protocol"]["choices"] == list(model.PF_PROTOCOLS)
    assert spec["forward"]["options"]["protocol"]["choices"] == list(model.FORWARD_PROTOCOLS)
    assert spec["forward"]["options"]["action"]["choices"] == list(model.FORWARD_ACTIONS)
    assert spec["forward"]["options"]["ct_state"]["choices"] == list(model.CT_STATES)
    # the documented defaults are the model's
    entry = model.build_config(pf())["port_forwards"][0]
    assert entry.protocol == spec["port_forwards"]["options"]["protocol"]["default"]
    assert entry.hairpin is spec["port_forwards"]["options"]["hairpin"]["default"]
    assert model.build_config(fwd())["forward"][0].action == \
        spec["forward"]["options"]["action"]["default"]
    assert argspec.MODULE_ARGUMENT_SPEC["config"] == {"type": "dict"}
    assert dict(argspec.MODULE_ARGUMENT_SPEC, config=None) == dict(argspec.ARGUMENT_SPEC, config=None)


def test_tcp_udp_is_two_entries():
    got = model.build_config(pf(protocol="tcp_udp"))["port_forwards"]
    assert [e.protocol for e in got] == ["tcp", "udp"]
    assert got[0]._replace(protocol="udp") == got[1]


def test_partial_entries_for_deleted_need_only_their_identity():
    got = model.build_config({"port_forwards": [{"in_interface": "eth0", "port": 80}],
                              "snat": [{"out_interface": "eth0"}]}, partial=True)
    assert got["port_forwards"][0].to_address is None
    assert got["snat"][0].to_address is None
    assert _error({"port_forwards": [{"in_interface": "eth0", "port": 80}]}).startswith(
        "port_forwards[0].to_address:")


def test_none_config_is_no_kinds():
    assert model.build_config(None) == {}
    assert model.build_config({}) == {}


def test_nat_sources_most_specific_first_any_source_last():
    got = model.build_config({"masquerade": [
        {"out_interface": "ppp0"}, {"source": "10.0.0.0/8", "out_interface": "ppp0"},
        {"source": "10.1.0.0/16", "out_interface": "ppp0"},
        {"source": "fd00::/64", "out_interface": "ppp0"}]})["masquerade"]
    assert [e.source for e in got] == ["fd00::/64", "10.1.0.0/16", "10.0.0.0/8", None]


def test_forward_keeps_user_order_but_v4_before_v6_within_a_family_run():
    got = model.build_config({"forward": [
        {"in_interface": "a", "destination": "fd00::/64"},
        {"in_interface": "a", "destination": "10.0.0.0/8"},
        {"in_interface": "b"},
        {"in_interface": "c", "source": "fd00::/64"},
        {"in_interface": "d"},
    ]})["forward"]
    assert [(e.in_interface, e.source or e.destination) for e in got] == [
        ("a", "10.0.0.0/8"), ("a", "fd00::/64"), ("b", None), ("c", "fd00::/64"), ("d", None)]


@pytest.mark.parametrize("kind, entry, key", [
    ("masquerade", model.Masquerade("10.0.0.0/8", "ppp0", "c"), ("10.0.0.0/8", "ppp0")),
    ("snat", model.Snat(None, "eth0", "203.0.113.1", None), (None, "eth0")),
    ("port_forwards", model.PortForward("eth0", "udp", "53", "10.0.0.5", None, None, True, "x"),
     ("eth0", "udp", "53")),
    ("helpers", model.Helper("ftp", "tcp", "21"), model.Helper("ftp", "tcp", "21")),
    ("forward", model.Forward("a", None, None, None, None, None, None, "drop", "c"),
     model.Forward("a", None, None, None, None, None, None, "drop", None)),
    ("input", model.Input("ppp0", "tcp", "22", "10.0.0.0/8", "c"), ("ppp0", "tcp", "22", "10.0.0.0/8")),
])
def test_identity(kind, entry, key):
    assert model.identity(kind, entry) == key


def test_ruleset_to_dict_folds_tcp_udp_and_prints_ports_as_numbers():
    ruleset = ruleset_of({"port_forwards": [
        dict(PF, protocol="tcp_udp", port="5000-5010"), dict(PF, port=8080, to_port="80"),
        dict(PF, port=53, protocol="udp", to_address="192.168.10.53")],
        "forward": [{"protocol": "tcp", "port": "22", "ct_state": ["new"]}],
        "helpers": [{"helper": "ftp", "port": "21"}]})
    got = model.ruleset_to_dict(ruleset)
    assert got["port_forwards"] == [
        {"in_interface": "eth0", "protocol": "tcp_udp", "port": "5000-5010",
         "to_address": "192.168.10.5"},
        {"in_interface": "eth0", "protocol": "tcp", "port": 8080, "to_address": "192.168.10.5",
         "to_port": 80},
        {"in_interface": "eth0", "protocol": "udp", "port": 53, "to_address": "192.168.10.53"},
    ]
    assert got["forward"] == [{"protocol": "tcp", "port": 22, "ct_state": ["new"],
                               "action": "accept"}]
    assert got["helpers"] == [{"helper": "ftp", "protocol": "tcp", "port": 21}]
    assert got["masquerade"] == [] and got["snat"] == []


@settings(max_examples=100, deadline=None)
@given(configs())
def test_ruleset_to_dict_is_valid_config_for_the_same_ruleset(config):
    """What gathered/parsed return can be fed back as config unchanged."""
    ruleset = ruleset_of(config)
    assert ruleset_of(model.ruleset_to_dict(ruleset)) == ruleset


@settings(max_examples=100, deadline=None)
@given(configs())
def test_canonical_is_idempotent_and_order_free_for_keyed_kinds(config):
    built = model.build_config(config)
    for kind, entries in built.items():
        assert model.canonical(kind, entries) == entries
        if kind in model.KEYED_KINDS:
            assert model.canonical(kind, reversed(entries)) == entries
