"""No value can add a line to the rule text: the model refuses hostile text, and the
renderers refuse any token outside what its field allows (the last guard).

The fuzz tests take valid configs and put random text (with newlines, quotes, braces,
';', '#', '%' and the like) into one string field of one entry. Whatever the model then
accepts is rendered for both backends, and every line of the output must be a line the
renderer makes for one of the model's rules, or the script's fixed frame.
"""
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import (
    iptables, model, nft, plan, rules)

from nat_helpers import configs

SEPARATORS = "\n\r\t\x0b\x0c\x00\u2028\u2029\x85 ;#{}[]\"'\\%$`|&<>,.:/-+*@!"
hostile_text = st.text(
    alphabet=st.one_of(st.sampled_from(SEPARATORS), st.characters(max_codepoint=0x2FFF)),
    max_size=24)


@st.composite
def poisoned(draw):
    """A valid config with one string field of one entry replaced or wrapped by random text."""
    config = draw(configs())
    kinds = [k for k in model.KINDS if config.get(k)]
    if not kinds:
        return config
    kind = draw(st.sampled_from(kinds))
    entry = draw(st.sampled_from(config[kind]))
    field = draw(st.sampled_from(sorted(entry) or ["in_interface"]))
    junk = draw(hostile_text)
    if field == "timeouts" and draw(st.booleans()):  # a key or a number of the dict
        key = draw(st.sampled_from(sorted(entry[field])))
        if draw(st.booleans()):
            entry[field][draw(st.sampled_from([junk, key + junk]))] = entry[field].pop(key)
        else:
            entry[field][key] = draw(st.sampled_from([junk, "%s%s" % (entry[field][key], junk)]))
        return config
    valid = str(entry.get(field, ""))
    address, slash, prefix = valid.partition("/")
    entry[field] = draw(st.sampled_from([
        junk, valid + junk, junk + valid, valid[:1] + junk + valid[1:],
        address + "%" + junk + slash + prefix,  # a zone id, where ipaddress takes one
        address + "%1\n" + junk + slash + prefix,
    ]))
    return config


def _nft_frame_and_rules(state):
    """The lines render_full may write for a State: its fixed frame, one line per rule and
    one per map element, built from the State's parts (not from the script)."""
    chains, lookups = nft.to_rules(state)
    allowed = {"table inet ipmasq {}", "delete table inet ipmasq", "table inet ipmasq {", "}",
               "\t}"}
    allowed |= {"\t\t" + nft.rule_text(x) for c in state.chains.values() for x in c}
    allowed |= {"\tchain %s {" % c for c in rules.CHAINS}
    allowed |= {"\t\t" + t for t in nft.CHAIN_TYPES.values()}
    allowed |= {"\tmap %s {" % m for m in nft.MAPS} | {"\t\t" + t for _f, t in nft.MAPS.values()}
    allowed.add("\t\tcounter")  # the maps' counter flag
    allowed |= {"\t" + nft._helper_decl(name) for kind, name in state.objects
                if kind == "ct helper"}
    allowed |= {"\t" + nft._timeout_decl(x) for x in state.chains["helpers"] if x.ct_timeout}
    for kind, name in state.objects:
        if kind == "set" and nft._LIMIT_SET.match(name):
            allowed |= {"\tset %s {" % name, "\t\t" + nft._set_decl(name)}
    for name, members in state.sets.items():
        allowed |= {"\tset %s {" % name, "\t\t" + nft._set_decl(name),
                    "\t\telements = { %s }" % nft._set_members(members)}
    elements = {nft._element_text(k, v) for m in state.elements.values() for k, v in m.items()}
    return allowed, elements


def _assert_nft_lines(state, text):
    allowed, elements = _nft_frame_and_rules(state)
    for line in text.split("\n")[:-1]:
        if line in allowed:
            continue
        element = re.sub(r"^\t\t(elements = \{ |\t)", "", line)
        element = re.sub(r"( \}|,)$", "", element)
        assert element in elements, "a line the model did not produce: %r" % line


def _assert_iptables_lines(state, text):
    allowed = {"# iptables-restore --noflush", "# ip6tables-restore --noflush", "COMMIT"}
    allowed |= set(iptables.IPSET_PARTS.values()) | set(iptables.NFCT_PARTS.values())
    for name, (family, proto, policy) in state.timeouts.items():
        allowed.add(" ".join(["add timeout", name, "inet6" if family == 6 else "inet", proto]
                             + ["%s %d" % pair for pair in policy]))
    for family, sets in state.sets.items():
        for name, members in sets.items():
            allowed.add("create %s hash:ip family %s" % (name, "inet6" if family == 6 else "inet"))
            allowed |= {"add %s %s" % (name, address) for address in members}
    allowed |= {"*%s" % t for t in iptables.TABLES}
    for chain, (_table, name, builtin) in iptables.CHAINS.items():
        allowed.add(":%s - [0:0]" % name)
        allowed |= {"-I %s %d -j %s" % (builtin, n, name) for n in (1, 2, 3)}
        allowed |= {"-A %s %s" % (name, iptables.rule_text(x))
                    for family in iptables.FAMILIES for x in state.chains[family][chain]}
    if text == "\n":  # nothing to load
        return
    for line in text.split("\n")[:-1]:
        assert line in allowed, "a line the model did not produce: %r" % line


@settings(max_examples=500, deadline=None)
@given(poisoned())
@example({"masquerade": [{"source": "2001:db8::%1\n-F\n#/64", "out_interface": "wan0"}]})
@example({"port_forwards": [{"in_interface": "wan0", "port": 80, "to_address": "fd00::5",
                             "comment": "x\u2028y"}]})
@example({"masquerade": [{"out_interface": "wan0", "source": "10.0.0.0/8",
                          "timeouts": {"udp\n}; flush ruleset": 30}}]})
@example({"static_nat": [{"interface": "wan+\n", "external": "203.0.113.5",
                          "internal": "10.0.0.5"}]})
@example({"npt": [{"interface": "wan0", "internal": "fd00::%1\n/64",
                   "external": "2001:db8::/64"}]})
def test_hostile_text_in_any_field_never_adds_a_line(config):
    try:
        ruleset = model.empty_ruleset()
        ruleset.update(model.build_config(config))
    except model.ConfigError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
        return
    interfaces = {pf.in_interface for pf in ruleset["port_forwards"] if pf.hairpin}
    addresses = dict((name, ("198.51.100.1", "2001:db8::1")) for name in interfaces)
    for codec, check in ((nft, _assert_nft_lines), (iptables, _assert_iptables_lines)):
        state = plan.want_state(codec, ruleset, addresses)
        check(state, codec.render_full(state))
        assert plan.read_model(codec, codec.parse(codec.render_full(state)))[0] == ruleset


# -------------------------------------------------------------- the last guard, alone

VALID = rules.Rule("prerouting", iif="wan0", saddr="198.51.100.0/24", proto="tcp", dport="8080",
                   verdict="dnat", to_addr="192.168.10.5", to_port="80", comment="web")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["iif", "oif", "saddr", "daddr", "proto", "dport", "to_addr", "to_port",
                        "comment", "helper"]), hostile_text)
def test_the_renderers_refuse_a_token_outside_its_field(field, junk):
    """A Rule built without the model (as a bug might): hostile text never reaches output."""
    rule = VALID._replace(**{field: "%s%s" % (getattr(VALID, field) or "", junk)})
    for render in (nft.rule_text, iptables.rule_text):
        try:
            text = render(rule)
        except rules.RenderError as exc:
            assert field in str(exc)
            continue
        # accepted: then the value was harmless for that field (a comment is quoted)
        forbidden = "\n\r\"\\\x00" if field == "comment" else "\n\r\"\\;{}#%\x00 "
        assert not set(getattr(rule, field) or "") & set(forbidden), (field, text)


@pytest.mark.parametrize("field, value", [
    ("saddr", "2001:db8::%1\n-F\n#/64"), ("to_addr", "fd00::5%eth0"), ("iif", "eth0\n"),
    ("comment", 'a" accept; flush ruleset; #'), ("dport", "80 accept"), ("proto", "tcp;"),
    ("helper", "ftp\" ; "), ("ct_state", ("new", "bogus")), ("iif_neg", "yes"),
    ("iif", "ppp+x"), ("iif", "p+p"), ("iif", "ppp*"), ("iif", "+"), ("oif", "ppp++"),
    ("to_addr", "10.0.0.0/8\n"), ("to_addr", "10.0.0.0/8/8"), ("ct_count", "4 } accept"),
    ("ct_count", "0"), ("nat_flags", ("random",)), ("nat_flags", "persistent"),
    ("ct_timeout", (("established", "960"),)), ("ct_timeout", (("bogus", 5),)),
    ("ct_timeout", (("established", 0),)), ("verdict", "notrack; flush"),
])
def test_render_guard_names_the_field(field, value):
    rule = VALID._replace(**{field: value})
    for render in (nft.rule_text, iptables.rule_text):
        with pytest.raises(rules.RenderError, match=field):
            render(rule)


def test_an_unknown_rule_read_from_the_host_may_not_carry_a_line_break():
    rule = rules.Rule("forward", verdict="unknown", comment="-A IPMASQ-FORWARD -j ACCEPT\n-F")
    with pytest.raises(rules.RenderError):
        nft.rule_text(rule)
    with pytest.raises(rules.RenderError):
        iptables.rule_text(rule)


def test_map_elements_are_guarded_too():
    state = plan.want_state(nft, dict(model.empty_ruleset(), port_forwards=(model.PortForward(
        "wan0", "tcp", "8080", "192.168.10.5\n}", None, None, False, None),)))
    with pytest.raises(rules.RenderError, match="to_addr"):
        nft.render_full(state)


# -------------------------------------------------------------- the model's refusals

@pytest.mark.parametrize("config, where", [
    ({"masquerade": [{"source": "fd00::%eth0/64", "out_interface": "wan0"}]}, "masquerade[0].source"),
    ({"snat": [{"out_interface": "wan0", "to_address": "fd00::1%1"}]}, "snat[0].to_address"),
    ({"snat": [{"out_interface": "wan0", "to_address": "fd00::1-fd00::9%1"}]}, "snat[0].to_address"),
    ({"port_forwards": [{"in_interface": "wan0", "port": 80, "to_address": "fd00::5%lan0"}]},
     "port_forwards[0].to_address"),
    ({"port_forwards": [{"in_interface": "wan0", "port": 80, "to_address": "fd00::5",
                         "source": "2001:db8::%1\n-F\n#/64"}]}, "port_forwards[0].source"),
    ({"forward": [{"destination": "fd00::%x/64"}]}, "forward[0].destination"),
])
def test_zone_ids_are_refused_in_every_field(config, where):
    with pytest.raises(model.ConfigError) as info:
        model.build_config(config)
    assert str(info.value).startswith(where + ": must not carry a zone id"), str(info.value)


def test_a_lone_surrogate_in_a_comment_is_a_clear_error():
    with pytest.raises(model.ConfigError, match=r"masquerade\[0\].comment: must be valid Unicode"):
        model.build_config({"masquerade": [{"out_interface": "wan0", "comment": "a\ud800b"}]})


def test_deeply_nested_running_config_is_a_parse_error():
    for text in ('{"nftables": %s%s}' % ("[" * 100000, "]" * 100000), "[" * 100000):
        with pytest.raises(rules.ParseError):
            plan.parse_running_config(text)


def test_a_huge_value_is_cut_in_the_message():
    with pytest.raises(model.ConfigError) as info:
        model.build_config({"masquerade": [{"out_interface": "w" * 2000000}]})
    assert len(str(info.value)) < 300 and "(2000002 characters)" in str(info.value)
