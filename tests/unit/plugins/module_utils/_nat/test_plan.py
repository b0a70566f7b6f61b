"""plan.py without a host: parse_running_config (state=parsed), plan_change, diff lines."""
import pytest
from hypothesis import example, given, settings, strategies as st

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import (
    iptables, model, nft, plan, rules)

from nat_helpers import (
    CAPTURE_KINDS, CAPTURE_RELEASES, CAPTURED, FIXTURES, fixture_config, fixture_text, reparse,
    ruleset_of, state_of)

HOWTO_SAVE = """\
*nat
-A POSTROUTING -s 192.168.0.0/24 -o ppp0 -j MASQUERADE
-A PREROUTING -i ppp0 -p tcp --dport 8080 -j DNAT --to-destination 192.168.0.5:80
COMMIT
*filter
-A FORWARD -s 192.168.0.0/24 -o ppp0 -j ACCEPT
-A FORWARD -d 192.168.0.0/24 -m state --state ESTABLISHED,RELATED -i ppp0 -j ACCEPT
COMMIT
"""

HOWTO_COMMANDS = """\
# the classic how-to, typed at a shell
iptables -t nat -A POSTROUTING -s 192.168.0.0/24 -o ppp0 -j MASQUERADE
iptables -t nat -A PREROUTING -i ppp0 -p tcp --dport 8080 -j DNAT --to-destination 192.168.0.5:80

iptables -A FORWARD -s 192.168.0.0/24 -o ppp0 -j ACCEPT
iptables -A FORWARD -d 192.168.0.0/24 -m state --state ESTABLISHED,RELATED -i ppp0 -j ACCEPT
"""

HOWTO_MODEL = {
    "masquerade": [{"source": "192.168.0.0/24", "out_interface": "ppp0"}],
    "port_forwards": [{"in_interface": "ppp0", "protocol": "tcp", "port": 8080,
                       "to_address": "192.168.0.5", "to_port": 80}],
    "forward": [
        {"source": "192.168.0.0/24", "out_interface": "ppp0", "action": "accept"},
        {"destination": "192.168.0.0/24", "in_interface": "ppp0",
         "ct_state": ["established", "related"], "action": "accept"},
    ],
}


@pytest.mark.parametrize("text", [HOWTO_SAVE, HOWTO_COMMANDS], ids=["iptables-save", "commands"])
def test_hand_typed_howto_rules_become_the_model(text):
    parsed = plan.parse_running_config(text)
    assert parsed == ruleset_of(HOWTO_MODEL)
    # as written, with the kinds it does not use empty
    assert model.ruleset_to_dict(parsed) == dict(
        HOWTO_MODEL, snat=[], helpers=[], input=[], static_nat=[], npt=[], connection_limits=[])


def test_howto_model_renders_and_reads_back_on_both_backends(codec):
    """The migrated rules survive a trip through either backend unchanged."""
    parsed = plan.parse_running_config(HOWTO_SAVE)
    text = codec.render_full(plan.want_state(codec, parsed))
    assert plan.parse_running_config(text) == parsed


def test_long_options_insert_and_ip6tables_lines():
    text = """\
iptables -t nat --append POSTROUTING --source 192.168.0.0/24 --out-interface ppp0 --jump MASQUERADE
iptables -t nat -I POSTROUTING 1 -s 10.0.0.0/8 -o eth0 -j SNAT --to-source 203.0.113.1
ip6tables -t nat -A POSTROUTING -s fd00::/64 -o ppp0 -j MASQUERADE
ip6tables -A FORWARD -p ipv6-icmp -j ACCEPT
"""
    assert plan.parse_running_config(text) == ruleset_of({
        "masquerade": [{"source": "192.168.0.0/24", "out_interface": "ppp0"},
                       {"source": "fd00::/64", "out_interface": "ppp0"}],
        "snat": [{"source": "10.0.0.0/8", "out_interface": "eth0", "to_address": "203.0.113.1"}],
        "forward": [{"protocol": "icmpv6"}],
    })


@pytest.mark.parametrize("dump", ["nft.json", "nft.txt", "ruleset.json", "ruleset.txt"])
@pytest.mark.parametrize("name", CAPTURED)
def test_nft_dumps_are_recognised(name, dump):
    assert plan.parse_running_config(fixture_text("%s.%s" % (name, dump))) == \
        ruleset_of(fixture_config(name))


def test_every_fixture_file_is_a_capture_the_tests_read():
    """The kernel-dump tests read <name>.<kind> for every captured name and kind; a file
    outside that pattern would be read by nothing."""
    expected = {"capture.sh"} | {"%s.config.json" % n for n in CAPTURED} | {
        "%s.%s" % (n, kind) for n in CAPTURED for kind in CAPTURE_KINDS}
    # a capture with hairpin forwards also holds the interface addresses the sets got
    # (read by fixture_addresses) and the ipsets (read by the iptables kernel-dump test)
    hairpin = {"%s.%s" % (n, kind) for n in CAPTURED
               for kind in ("addresses.json", "ipset-save")
               if (FIXTURES / ("%s.addresses.json" % n)).exists()}
    # the captures made with another release's tools sit in a folder of that release's name
    releases = set(r for r in CAPTURE_RELEASES if r != "bookworm")
    # the gateway's table as version 1 rendered it, before counters (test_nft: the upgrade)
    uncounted = {"gateway.uncounted.nft.json", "gateway.uncounted.nft.txt"}
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted(
        expected | hairpin | releases | uncounted)
    for release in releases:
        captured = expected - {"capture.sh"} - {"%s.config.json" % n for n in CAPTURED}
        assert sorted(p.name for p in (FIXTURES / release).iterdir()) == sorted(
            captured | (hairpin - {n for n in hairpin if n.endswith(".addresses.json")})), release
    assert {"gateway", "apostrophe", "icmpv6", "v6-prefix32"} <= set(CAPTURED)


@pytest.mark.parametrize("name", CAPTURED)
def test_iptables_save_of_both_families_with_the_marker_line(name):
    """A whole dump from a host with our chains reads as our chains: Docker's rules in the
    built-in chains are someone else's and are left out."""
    text = fixture_text("%s.iptables-save" % name) + "# ip6tables-save\n" + \
        fixture_text("%s.ip6tables-save" % name)
    assert plan.parse_running_config(text) == ruleset_of(fixture_config(name))


def test_hand_made_gateway_beside_docker_reads_the_admins_rules_only():
    """Without IPMASQ chains the built-in chains are migrated; Docker's masquerade is
    Docker's, skipped and counted, never taken as ours."""
    text = ("*nat\n-A POSTROUTING -s 192.168.0.0/24 -o ppp0 -j MASQUERADE\n"
            "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\nCOMMIT\n")
    parsed, report = plan.parse_running_config(text, report=True)
    assert parsed == ruleset_of({"masquerade": [{"source": "192.168.0.0/24",
                                                 "out_interface": "ppp0"}]})
    assert report["foreign"] == {"Docker": {"rules": 1, "chains": []}}
    assert report["unreadable"] == []


@pytest.mark.parametrize("text, part", [
    ("iptables -t nat -A POSTROUTING -o ppp0 -j LOG\n", "target LOG"),
    ("*nat\n-A PREROUTING -i ppp0 -p tcp --dport 80 -j REDIRECT --to-ports 3128\nCOMMIT\n",
     "REDIRECT"),
    ("*filter\n-A FORWARD -m limit --limit 3/min -j ACCEPT\nCOMMIT\n", "--limit"),
])
def test_foreign_rules_the_model_cannot_express_are_reported_by_line(text, part):
    parsed, report = plan.parse_running_config(text, report=True)
    assert model.is_empty(parsed)
    item, = report["unreadable"]
    assert part in item["reason"] + item["rule"] and item["line"] in (1, 2)
    assert any("no entry to migrate" in note for note in report["notes"])


def test_a_rule_in_our_own_table_the_model_cannot_express_is_an_error():
    text = "table inet ipmasq {\n\tchain forward {\n\t\tmeta mark 0x1 accept\n\t}\n}\n"
    with pytest.raises(rules.ParseError) as info:
        plan.parse_running_config(text)
    assert "meta mark" in str(info.value)


@pytest.mark.parametrize("text", [
    "echo 1 > /proc/sys/net/ipv4/ip_forward\n",
    "*nat\n-A POSTROUTING -o ppp0 -j MASQUERADE --comment 'unclosed\nCOMMIT\n",
    '{"nftables": ',
])
def test_text_that_is_no_ruleset_raises_parse_error(text):
    with pytest.raises(rules.ParseError):
        plan.parse_running_config(text)


def test_a_policy_alone_gives_an_empty_result_that_says_why():
    parsed, report = plan.parse_running_config("iptables -P FORWARD DROP\n", report=True)
    assert model.is_empty(parsed)
    assert any("FORWARD policy is DROP" in note for note in report["notes"])
    assert any("no entry to migrate" in note for note in report["notes"])


def test_sudo_before_the_command_is_read():
    assert plan.parse_running_config("sudo iptables -t nat -A POSTROUTING -o ppp0 -j MASQUERADE\n") \
        == ruleset_of({"masquerade": [{"out_interface": "ppp0"}]})


def test_iptables_save_with_counters_reads_like_without():
    """``iptables-save -c`` writes ``[packets:bytes]`` in front of every rule."""
    plain = fixture_text("gateway.iptables-save")
    counted = "".join("[%d:%d] %s" % (n, 60 * n, line) if line.startswith("-A ") else line
                      for n, line in enumerate(plain.splitlines(True)))
    assert counted.count("] -A ") == plain.count("\n-A ") + plain.startswith("-A ")
    assert plan.parse_running_config(counted) == plan.parse_running_config(plain)


MALFORMED = [
    pytest.param(":", id="iptables-bare-colon"),
    pytest.param("*nat\n-A PREROUTING -i ppp0 -p tcp --dport", id="iptables-dport-no-value"),
    pytest.param("*filter\n-A FORWARD -m conntrack --ctstate", id="iptables-ctstate-no-value"),
    pytest.param("*nat\n-A PREROUTING -i ppp0 -j DNAT --to-destination",
                 id="iptables-to-destination-no-value"),
    pytest.param("*nat\n-A POSTROUTING -o ppp0 -j", id="iptables-jump-no-target"),
    pytest.param("*nat\n-A POSTROUTING -o ppp0 -j MASQUERADE -c", id="iptables-counters-cut"),
    pytest.param("*nat\n-A POSTROUTING -o ppp0 -j MASQUERADE -c 7", id="iptables-counters-one-number"),
    pytest.param("*nat\n[0:", id="iptables-save-c-prefix-cut"),
    pytest.param("*nat\n[3:180]\nCOMMIT\n", id="iptables-save-c-prefix-without-rule"),
    pytest.param("*nat\n[3:180] -A POSTROUTING -o ppp0 -j", id="iptables-save-c-rule-cut"),
    pytest.param("*nat\n[3:180] -A POSTROUTING -j MASQUERADE -o", id="iptables-save-c-last-value-cut"),
    pytest.param("*nat\n-A POSTROUTING -j SNAT --to-source", id="iptables-to-source-no-value"),
    pytest.param("*filter\n-A FORWARD -j ACCEPT -s", id="iptables-last-value-cut"),
    pytest.param("table inet ipmasq {\n\tchain forward {\n\t\tiifname\n\t}\n}\n",
                 id="nft-iifname-no-value"),
    pytest.param("table inet ipmasq {\n\tchain forward {\n\t\tip saddr\n\t}\n}\n",
                 id="nft-saddr-no-value"),
    pytest.param("table inet ipmasq {\n\tmap fwd4 {\n\t\telements = { \"a }\n\t}\n}\n",
                 id="nft-element-unclosed-quote"),
    pytest.param("table inet ipmasq {\n\tmap fwd4 {\n\t\telements = { \"ppp0\" . tcp . 80 : "
                 "10.0.0.5 . 80,\n", id="nft-element-list-cut"),
    pytest.param("table inet ipmasq {\n\tmap fwd4 {\n\t\telements = { \"ppp0\" . tcp . 80 : "
                 "10.0.0.5 . 80, \"ppp0\" . tcp . 81 : 10.0.0.5 }\n\t}\n}\n",
                 id="nft-last-element-cut"),
    pytest.param('{"nftables": [1]}', id="json-item-not-object"),
    pytest.param('{"nftables": [{"rule": 1}]}', id="json-rule-not-object"),
    pytest.param('{"nftables": [{"map": {"family": "inet", "table": "ipmasq", "name": "fwd4", '
                 '"elem": [[1, 2]]}}]}', id="json-element-not-concat"),
    pytest.param('{"nftables": [{"rule": {"family": "inet", "table": "ipmasq", '
                 '"chain": "forward", "expr": 5}}]}', id="json-expr-not-list"),
]


def _parse_or_clean_error(text):
    """Random text may happen to be a ruleset. If it is not, the error is one that plan.run
    reports as "cannot parse": a ParseError, or a ValueError from building the model of
    what was parsed (a helper rule without its port, for one), never a traceback."""
    try:
        plan.parse_running_config(text)
    except (rules.ParseError, ValueError):
        pass


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_text_raises_a_parse_error(text):
    with pytest.raises(rules.ParseError):
        plan.parse_running_config(text)


def _dumps():
    names = ["gateway.nft.json", "gateway.nft.txt", "gateway.iptables-save",
             "gateway.ip6tables-save", "gateway.ruleset.json"]
    return [fixture_text(name) for name in names] + [HOWTO_SAVE, HOWTO_COMMANDS]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_random_text_raises_only_parse_errors(text):
    _parse_or_clean_error(text)


@settings(max_examples=100, deadline=None)
@given(st.binary())
def test_random_bytes_raise_only_parse_errors(data):
    _parse_or_clean_error(data.decode("utf-8", "replace"))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_dumps()), st.data())
@example("*nat\n-A POSTROUTING -o ppp0 -j", None)
def test_cut_dumps_raise_only_parse_errors(text, data):
    if data is not None:
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, len(text)))
        text = text[:start] + text[end:]
    _parse_or_clean_error(text)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_dumps()), st.data())
@example("*filter\n-A FORWARD -m conntrack --ctstate", None)
def test_dumps_with_words_dropped_raise_only_parse_errors(text, data):
    if data is not None:
        lines = text.splitlines()
        index = data.draw(st.integers(0, len(lines) - 1))
        words = lines[index].split(" ")
        keep = data.draw(st.lists(st.booleans(), min_size=len(words), max_size=len(words)))
        lines[index] = " ".join(w for w, k in zip(words, keep) if k)
        text = "\n".join(lines)
    _parse_or_clean_error(text)


# ---------------------------------------------------------------- plan_change and friends

def test_plan_change_against_a_host_without_our_rules(codec):
    config = model.build_config(HOWTO_MODEL)
    before, after, want, commands = plan.plan_change(codec, "merged", codec.empty_state(), config)
    assert before == model.empty_ruleset()
    assert after == ruleset_of(HOWTO_MODEL)
    assert want == plan.want_state(codec, after)
    assert commands == codec.render_changes(codec.empty_state(), want) != []


def test_read_model_returns_foreign_rules_separately():
    text = nft.render_full(state_of(nft, HOWTO_MODEL)).replace(
        "\t\tct status dnat counter accept\n",
        "\t\tct status dnat counter accept\n\t\tmeta mark 0x1 accept\n")
    ruleset, foreign = plan.read_model(nft, nft.parse(text))
    assert ruleset == ruleset_of(HOWTO_MODEL)
    assert [r.comment for r in foreign] == ["meta mark 0x1 accept"]


def test_ruleset_lines_one_rule_per_line_for_diff_mode():
    state = reparse(iptables, state_of(iptables, HOWTO_MODEL))
    assert plan.ruleset_lines(iptables, state).splitlines() == [
        "prerouting: -i ppp0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.0.5:80",
        "postrouting: -s 192.168.0.0/24 -o ppp0 -j MASQUERADE",
        "forward: -m conntrack --ctstate DNAT -j ACCEPT",
        "forward: -s 192.168.0.0/24 -o ppp0 -j ACCEPT",
        "forward: -d 192.168.0.0/24 -i ppp0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    nft_lines = plan.ruleset_lines(nft, reparse(nft, state_of(nft, HOWTO_MODEL)))
    assert 'prerouting: iifname "ppp0" tcp dport 8080 counter dnat ip to 192.168.0.5:80\n' \
        in nft_lines


def test_a_missing_interface_is_named_once_with_the_entries_that_name_it():
    config = {"masquerade": [{"out_interface": "ppp0"}, {"out_interface": "wan0"}],
              "forward": [{"in_interface": "ppp0", "action": "drop"}, {"out_interface": 0}],
              "input": [{"in_interface": "ppp+", "port": 22}]}
    uses = model.interface_uses(config)
    assert uses == {"ppp0": ["masquerade[0].out_interface", "forward[0].in_interface"],
                    "wan0": ["masquerade[1].out_interface"], "0": ["forward[1].out_interface"]}
    [warning] = plan.missing_interface_warnings(uses, ["ppp0"])
    assert warning.startswith("interface ppp0 does not exist on this host (named by "
                              "masquerade[0].out_interface, forward[0].in_interface): ")
    assert "A PPP, VPN or other link that comes up later is fine" in warning
    many = {"eth9": ["port_forwards[%d].in_interface" % i for i in range(5)]}
    assert "port_forwards[2].in_interface and 2 more)" in plan.missing_interface_warnings(
        many, ["eth9"])[0]
