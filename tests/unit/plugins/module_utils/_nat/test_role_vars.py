"""role_vars.py: the roles' ipmasq_* variables -> module config, every error naming the
variable; and the roles' argument specs kept equal to the one schema in Python."""
from pathlib import Path

import pytest
import yaml

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import argspec, model, role_vars

ROLES = Path(__file__).resolve().parents[5] / "roles"
PUBLIC_ROLES = ("gateway", "masquerade", "port_forward", "forwarding")
BASE = {"ipmasq_wan_interface": "ppp0", "ipmasq_lan_networks": ["192.168.10.0/24"]}
PF = {"port": 8080, "to_address": "192.168.10.5"}


def spec_of(role):
    data = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return data["argument_specs"]["main"]["options"]


def build(role="gateway", **variables):
    return role_vars.role_config(dict(BASE, **variables), role)


def error(role="gateway", **variables):
    with pytest.raises(role_vars.RoleVarError) as info:
        build(role, **variables)
    return str(info.value)


# ---------------------------------------------------------------- one schema

def test_every_role_variable_is_known_and_every_known_variable_is_in_a_role():
    names = set()
    for role in PUBLIC_ROLES:
        names |= set(spec_of(role))
    assert sorted(names) == sorted(role_vars.VARIABLES)


@pytest.mark.parametrize("role", ["gateway", "port_forward"])
def test_the_port_forward_entries_of_the_roles_are_the_modules(role):
    """The entry schema lives once, in argspec.CONFIG_SPEC; the roles' specs must match it."""
    module = argspec.CONFIG_SPEC["port_forwards"]["options"]
    roles = spec_of(role)["ipmasq_port_forwards"]["options"]
    assert sorted(roles) == sorted(module)
    for field, spec in module.items():
        for key in ("type", "choices", "default"):
            assert roles[field].get(key) == spec.get(key), (field, key)
    # what the model requires of an entry, the role spec requires (in_interface has a default)
    assert sorted(f for f, s in roles.items() if s.get("required")) == ["port", "to_address"]


@pytest.mark.parametrize("role, variable, kind", [
    ("gateway", "ipmasq_static_nat", "static_nat"),
    ("port_forward", "ipmasq_static_nat", "static_nat"),
    ("gateway", "ipmasq_npt", "npt"), ("masquerade", "ipmasq_npt", "npt")])
def test_the_static_nat_and_npt_entries_of_the_roles_are_the_modules(role, variable, kind):
    module = argspec.CONFIG_SPEC[kind]["options"]
    roles = spec_of(role)[variable]["options"]
    assert sorted(roles) == sorted(module)
    for field, spec in module.items():
        for key in ("type", "choices", "default"):
            assert roles[field].get(key) == spec.get(key), (field, key)
    # the interface defaults to ipmasq_wan_interface; the rest of the identity is required
    assert sorted(f for f, s in roles.items() if s.get("required")) == ["external", "internal"]


@pytest.mark.parametrize("role", ["gateway", "masquerade"])
def test_the_wan_input_entries_of_the_roles_are_the_modules(role):
    """ipmasq_wan_input entries are the module's input entries but their interface, which
    is ipmasq_wan_interface."""
    module = dict(argspec.CONFIG_SPEC["input"]["options"])
    del module["in_interface"]
    roles = spec_of(role)["ipmasq_wan_input"]["options"]
    assert sorted(roles) == sorted(module)
    for field, spec in module.items():
        for key in ("type", "choices", "default"):
            assert roles[field].get(key) == spec.get(key), (field, key)


@pytest.mark.parametrize("role", PUBLIC_ROLES)
def test_the_roles_defaults_are_their_argument_specs_defaults(role):
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    spec = spec_of(role)
    assert sorted(defaults) == sorted(n for n, s in spec.items() if not s.get("required")
                                      and "default" in s)
    for name, value in defaults.items():
        assert spec[name]["default"] == value, name


@pytest.mark.parametrize("role", ["gateway", "masquerade"])
def test_wan_interface_and_lan_networks_are_required(role):
    spec = spec_of(role)
    for name in ("ipmasq_wan_interface", "ipmasq_lan_networks"):
        assert spec[name].get("required") is True and "default" not in spec[name]
        with pytest.raises(role_vars.RoleVarError, match="^%s: the %s role needs it" % (name, role)):
            role_vars.role_config(dict(BASE, **{name: None}), role)


# ---------------------------------------------------------------- the translation

def test_the_gateway_builds_every_kind_and_the_kernel_settings():
    got = build(ipmasq_port_forwards=[PF], ipmasq_helpers=["ftp", {"name": "sip", "protocol": "tcp"}],
                ipmasq_conntrack_timeouts={"udp": "45"}, ipmasq_conntrack_max=1024)
    assert got["config"] == {
        "masquerade": [{"source": "192.168.10.0/24", "out_interface": "ppp0"}],
        "snat": [],
        "forward": [{"out_interface": "ppp0", "source": "192.168.10.0/24", "action": "accept"},
                    {"in_interface": "ppp0", "ct_state": ["established", "related"],
                     "action": "accept"},
                    {"in_interface": "ppp0", "action": "drop"}],
        "port_forwards": [dict(PF, in_interface="ppp0")],
        "helpers": [{"helper": "ftp", "port": 21}, {"helper": "sip", "port": 5060, "protocol": "tcp"}],
        "input": [], "static_nat": [], "npt": [], "connection_limits": [],
    }
    assert got["kernel"] == {"ipv6_forwarding": False, "conntrack_timeouts": {"udp": 45},
                             "persist": True, "conntrack_max": 1024}
    model.build_config(got["config"])  # valid for the module as it is


@pytest.mark.parametrize("role, kinds, kernel", [
    ("masquerade", ["masquerade", "snat", "forward", "input", "npt", "connection_limits"], False),
    ("port_forward", ["port_forwards", "static_nat"], False),
    ("forwarding", ["helpers"], True),
])
def test_each_single_role_owns_its_kinds(role, kinds, kernel):
    got = build(role, ipmasq_port_forwards=[PF])
    assert sorted(got["config"]) == sorted(kinds)
    assert (got["kernel"] is not None) is kernel


def test_snat_and_inbound_accept():
    got = build(ipmasq_snat_address="203.0.113.10", ipmasq_inbound_policy="accept")["config"]
    assert got["masquerade"] == [] and got["snat"][0]["to_address"] == "203.0.113.10"
    assert {"in_interface": "ppp0", "action": "drop"} not in got["forward"]


def test_wan_input_entries_come_in_by_the_wan_interface():
    entries = [{"protocol": "tcp", "port": 22, "source": "198.51.100.0/24"}, {"protocol": "icmp"}]
    for role in ("gateway", "masquerade"):
        got = build(role, ipmasq_wan_input=entries)["config"]["input"]
        assert got == [dict(e, in_interface="ppp0") for e in entries]
    assert "input" not in build("port_forward")["config"]
    assert "input" not in build("forwarding")["config"]


def test_static_nat_npt_limit_and_timeouts_of_the_roles():
    got = build(ipmasq_wan_interface="ppp+", ipmasq_lan_networks=["192.168.10.0/24", "fd00::/64"],
                ipmasq_static_nat=[{"external": "203.0.113.5", "internal": "192.168.10.5"},
                                   {"interface": "eth1", "external": "198.51.100.9",
                                    "internal": "192.168.10.9", "hairpin": True}],
                ipmasq_npt=[{"internal": "fd00::/64", "external": "2001:db8::/64"}],
                ipmasq_client_connection_limit="128",
                ipmasq_masquerade_timeouts={"tcp_established": 960, "udp": 30})["config"]
    assert got["static_nat"] == [
        {"interface": "ppp+", "external": "203.0.113.5", "internal": "192.168.10.5"},
        {"interface": "eth1", "external": "198.51.100.9", "internal": "192.168.10.9",
         "hairpin": True}]
    assert got["npt"] == [{"interface": "ppp+", "internal": "fd00::/64",
                           "external": "2001:db8::/64"}]
    assert got["connection_limits"] == [{"source": "192.168.10.0/24", "per_address": 128},
                                        {"source": "fd00::/64", "per_address": 128}]
    assert [e["timeouts"] for e in got["masquerade"]] == [
        {"tcp_established": 960, "udp": 30}] * 2
    assert [e["out_interface"] for e in got["masquerade"]] == ["ppp+", "ppp+"]
    model.build_config(got)
    # 0 (the default) is no limit; no timeouts, no timeouts key
    got = build(ipmasq_client_connection_limit=0)["config"]
    assert got["connection_limits"] == [] and "timeouts" not in got["masquerade"][0]
    got = build(ipmasq_snat_address="203.0.113.10", ipmasq_masquerade_timeouts={"udp": 30})
    assert got["config"]["snat"][0]["timeouts"] == {"udp": 30}


def test_an_entry_with_its_own_in_interface_keeps_it():
    got = build(ipmasq_port_forwards=[dict(PF, in_interface="eth1")])["config"]
    assert got["port_forwards"][0]["in_interface"] == "eth1"


# Each error names the variable (and entry) and shows the value.
ERRORS = [
    ({"ipmasq_lan_network": ["10.0.0.0/8"]},
     "ipmasq_lan_network: no ipmasq.gateway role reads this variable; did you mean ipmasq_lan_networks?"),
    ({"ipmasq_lan_networks": "10.0.0.0/8"},
     "ipmasq_lan_networks: must be a list, not a string: write [10.0.0.0/8] (got '10.0.0.0/8')"),
    ({"ipmasq_lan_networks": ["10.0.0.1/8"]},
     "ipmasq_lan_networks[0]: has host bits set; use the network address (got '10.0.0.1/8')"),
    ({"ipmasq_lan_networks": ["10.0.0.0/8", "10.0.0.0/8"]},
     "ipmasq_lan_networks[1]: duplicate of ipmasq_lan_networks[0]"),
    ({"ipmasq_wan_interface": "ppp0; rm"}, "ipmasq_wan_interface: may contain only"),
    ({"ipmasq_wan_interface": ["ppp0"]}, "ipmasq_wan_interface: must be a string (got ['ppp0'])"),
    ({"ipmasq_snat_address": "203.0.113.300"},
     "ipmasq_snat_address: is not a valid IP address (got '203.0.113.300')"),
    ({"ipmasq_snat_address": "2001:db8::1"}, "ipmasq_snat_address: mixes IPv4 and IPv6"),
    ({"ipmasq_port_forwards": [PF, dict(PF, port=70000)]},
     "ipmasq_port_forwards[1].port: ports must be between 1 and 65535 (got 70000)"),
    ({"ipmasq_port_forwards": [dict(PF, to_address="fd00::5%eth0")]},
     "ipmasq_port_forwards[0].to_address: must not carry a zone id"),
    ({"ipmasq_port_forwards": ["8080"]}, "ipmasq_port_forwards[0]: must be a dictionary (got '8080')"),
    ({"ipmasq_port_forwards": [PF, PF]}, "ipmasq_port_forwards[1]: duplicate of ipmasq_port_forwards[0]"),
    ({"ipmasq_helpers": ["ftp", "h323"]}, "ipmasq_helpers[1]: is not a helper the kernel ships"),
    ({"ipmasq_helpers": [{"name": "tftp", "protocol": "tcp"}]},
     "ipmasq_helpers[0].protocol: must be one of udp (got 'tcp')"),
    ({"ipmasq_helpers": [{"name": "ftp", "ports": 2121}]}, "ipmasq_helpers[0]: unknown key ports"),
    ({"ipmasq_conntrack_timeouts": {"udpp": 30}},
     "ipmasq_conntrack_timeouts.udpp: is not a timeout; did you mean udp?"),
    ({"ipmasq_conntrack_timeouts": {"udp": 0}},
     "ipmasq_conntrack_timeouts.udp: must be a positive whole number (got 0)"),
    ({"ipmasq_conntrack_max": -1}, "ipmasq_conntrack_max: must be a positive whole number (got -1)"),
    ({"ipmasq_rollback_timeout": -5}, "ipmasq_rollback_timeout: must be 0 (off) or a number of seconds"),
    ({"ipmasq_lan_networks": []}, "ipmasq_lan_networks: the gateway role needs it (got [])"),
    ({"ipmasq_wan_input": "22"}, "ipmasq_wan_input: must be a list, not a string"),
    ({"ipmasq_wan_input": [22]}, "ipmasq_wan_input[0]: must be a dictionary"),
    ({"ipmasq_wan_input": [{"port": 22, "in_interface": "lan0"}]},
     "ipmasq_wan_input[0]: unknown key in_interface (allowed: protocol, port, source, comment; "
     "the interface is ipmasq_wan_interface)"),
    ({"ipmasq_wan_input": [{"port": 22}, {"port": 70000}]},
     "ipmasq_wan_input[1].port: ports must be between 1 and 65535 (got 70000)"),
    ({"ipmasq_wan_input": [{"protocol": "icmp", "port": 8}]},
     "ipmasq_wan_input[0].port: icmp has no ports: omit the field (got 8)"),
    ({"ipmasq_wan_input": [{"port": 22}, {"port": "22"}]},
     "ipmasq_wan_input[1]: duplicate of ipmasq_wan_input[0]"),
    ({"ipmasq_wan_input": [{"port": 22, "source": "10.0.0.1/8"}]},
     "ipmasq_wan_input[0].source: has host bits set"),
    ({"ipmasq_wan_inputs": []}, "ipmasq_wan_inputs: no ipmasq.gateway role reads this variable; "
     "did you mean ipmasq_wan_input?"),
    ({"ipmasq_static_nat": [{"external": "203.0.113.5", "internal": "192.168.10.5"},
                            {"external": "203.0.113.300", "internal": "192.168.10.6"}]},
     "ipmasq_static_nat[1].external: is not a valid IP address (got '203.0.113.300')"),
    ({"ipmasq_static_nat": [{"external": "203.0.113.8/29", "internal": "192.168.10.5"}]},
     "ipmasq_static_nat[0].internal: must be as long a prefix as external 203.0.113.8/29"),
    ({"ipmasq_static_nat": [{"interface": "wan 0", "external": "203.0.113.5",
                             "internal": "192.168.10.5"}]},
     "ipmasq_static_nat[0].interface: may contain only"),
    ({"ipmasq_static_nat": ["203.0.113.5"]},
     "ipmasq_static_nat[0]: must be a dictionary (got '203.0.113.5')"),
    ({"ipmasq_static_nat": [{"external": "203.0.113.5", "internal": "192.168.10.5"},
                            {"external": "203.0.113.6", "internal": "192.168.10.5"}]},
     "ipmasq_static_nat[1].internal: overlaps ipmasq_static_nat[0].internal"),
    ({"ipmasq_npt": [{"internal": "fd00::/64", "external": "2001:db8::/56"}]},
     "ipmasq_npt[0].external: must be as long a prefix as internal fd00::/64 (got '2001:db8::/56')"),
    ({"ipmasq_npt": [{"internal": "10.0.0.0/8", "external": "2001:db8::/64"}]},
     "ipmasq_npt[0].internal: must be an IPv6 prefix"),
    ({"ipmasq_client_connection_limit": -1},
     "ipmasq_client_connection_limit: must be 0 (off) or a number of connections (got -1)"),
    ({"ipmasq_client_connection_limit": "lots"},
     "ipmasq_client_connection_limit: must be 0 (off) or a number of connections (got 'lots')"),
    ({"ipmasq_client_connection_limit": 2000000},
     "ipmasq_client_connection_limit: must be a whole number of connections from 1 to 1000000"),
    ({"ipmasq_masquerade_timeouts": {"udp": 0}},
     "ipmasq_masquerade_timeouts.udp: must be a whole number of seconds from 1 to 2147483 (got 0)"),
    ({"ipmasq_masquerade_timeouts": {"udpp": 30}},
     "ipmasq_masquerade_timeouts: is not a timeout a rule can set"),
    ({"ipmasq_masquerade_timeouts": [30]},
     "ipmasq_masquerade_timeouts: must be a dictionary (got [30])"),
    ({"ipmasq_wan_interface": "ppp+", "ipmasq_port_forwards": [dict(PF, hairpin=True)]},
     "ipmasq_port_forwards[0].hairpin: needs the addresses of one interface, but in_interface "
     "ppp+ is a pattern"),
]


@pytest.mark.parametrize("variables, message", ERRORS, ids=[m.split(":")[0] for _v, m in ERRORS])
def test_errors_name_the_variable(variables, message):
    assert error(**variables).startswith(message)


def test_a_port_forward_without_interface_needs_the_wan_interface():
    msg = str(pytest.raises(role_vars.RoleVarError, role_vars.role_config,
                            {"ipmasq_port_forwards": [PF]}, "port_forward").value)
    assert msg.startswith("ipmasq_port_forwards[0].in_interface: is required when "
                          "ipmasq_wan_interface is not set"), msg


def test_an_unknown_role_is_refused():
    with pytest.raises(role_vars.RoleVarError, match="unknown role"):
        role_vars.role_config(BASE, "firewall")
