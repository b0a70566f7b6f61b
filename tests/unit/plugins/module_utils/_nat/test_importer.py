"""state=parsed on real-world dumps: every dump in ../shared/realworld-dumps, against the
expectations its manifest.json records (what a migration must find, what it must report as
unreadable, what belongs to other managers and must never be taken as ours)."""
import json
import os
import re
from pathlib import Path

import pytest

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import (
    importer, model, plan, rules)

from nat_helpers import ruleset_of

REPO = Path(__file__).resolve().parents[5]
# beside the checkout; a copy of the collection elsewhere (tests/matrix) names them
DUMPS = Path(os.environ.get("IPMASQ_REALWORLD_DUMPS") or REPO.parent / "shared" / "realworld-dumps")
MANIFEST = DUMPS / "manifest.json"
# The kinds the manifest states in full for every dump.
EXPECTED_KINDS = ("masquerade", "snat", "port_forwards")
INTERFACE_FIELDS = ("in_interface", "out_interface")


def _manifest():
    # No skip: CI has the directory beside the checkout, and a missing one must show.
    assert MANIFEST.is_file(), (
        "the real-world dumps are missing: expected %s beside the checkout" % MANIFEST)
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["dumps"]


DUMP_IDS = [d["id"] for d in _manifest()]


def _words(text):
    return " ".join(text.split())


def _line_numbers(text, wanted):
    """The numbers of the dump's lines that are ``wanted`` (whitespace aside)."""
    return [n for n, line in enumerate(text.split("\n"), 1)
            if _words(line) == _words(wanted)]


@pytest.fixture(scope="module", name="dumps")
def _dumps():
    out = {}
    for entry in _manifest():
        text = (DUMPS / entry["file"]).read_text(encoding="utf-8")
        ruleset, report = importer.read(text)
        out[entry["id"]] = (entry, text, ruleset, report)
    return out


def test_the_manifest_lists_every_dump():
    files = sorted(p.name for p in DUMPS.iterdir() if p.name != "manifest.json")
    assert sorted(d["file"] for d in _manifest()) == files
    assert len(files) == 30


@pytest.mark.parametrize("dump_id", DUMP_IDS)
def test_finds_what_a_migration_must_find(dumps, dump_id):
    entry, _text, ruleset, _report = dumps[dump_id]
    for kind in EXPECTED_KINDS:
        want = ruleset_of({kind: entry["expect"].get(kind, [])})[kind]
        assert ruleset[kind] == want, (kind, model.ruleset_to_dict(ruleset)[kind])


@pytest.mark.parametrize("dump_id", DUMP_IDS)
def test_reports_every_rule_it_cannot_express(dumps, dump_id):
    entry, text, _ruleset, report = dumps[dump_id]
    reported = [_words(item["rule"]) for item in report.unreadable]
    for line in entry.get("unreadable", []):
        assert _words(line) in reported, (line, reported)
    for item in report.unreadable:
        assert item["reason"] and item["line"] >= 1
        assert _words(item["rule"]) in _words(text.split("\n")[item["line"] - 1]) or \
            item["rule"].startswith("chain ") or item["rule"].startswith("accept of"), item


@pytest.mark.parametrize("dump_id", DUMP_IDS)
def test_never_takes_another_managers_rule_as_ours(dumps, dump_id):
    entry, text, ruleset, report = dumps[dump_id]
    for line in entry.get("foreign", []):
        numbers = _line_numbers(text, line)
        assert numbers, "the manifest's line is not in the dump: %s" % line
        for number in numbers:
            assert report.lines.get(number) != "read", (number, line)
    named = set()
    for kind, entries in model.ruleset_to_dict(ruleset).items():
        for item in entries:
            named.update(item.get(field) for field in INTERFACE_FIELDS if item.get(field))
    assert not named & set(entry.get("foreign_interfaces", [])), named


@pytest.mark.parametrize("dump_id", DUMP_IDS)
def test_an_empty_result_says_why(dumps, dump_id):
    _entry, _text, ruleset, report = dumps[dump_id]
    said = importer.warnings(report.as_dict())
    if model.is_empty(ruleset):
        assert any("no entry to migrate" in w for w in said), said
    named = set()
    for warning in said:
        found = re.match(r"running_config lines? ([0-9, -]+):", warning)
        for part in found.group(1).split(", ") if found else ():
            low, _sep, high = part.partition("-")
            named.update(range(int(low), int(high or low) + 1))
    for item in report.unreadable:
        assert item["line"] in named, (item, said)


@pytest.mark.parametrize("dump_id", DUMP_IDS)
def test_the_module_returns_it_as_parsed_and_warnings(dump_id, dumps):
    _entry, text, ruleset, _report = dumps[dump_id]
    parsed, report = plan.parse_running_config(text, report=True)
    assert parsed == ruleset
    assert report["format"] in ("iptables", "nft", "nft -j")


def test_every_dump_passes_fully(dumps):
    """The count the report to the lead quotes."""
    assert len(dumps) == len(DUMP_IDS) == 30


# ---------------------------------------------------------------- the formats, one by one

def _read(text):
    ruleset, report = importer.read(text)
    return model.ruleset_to_dict(ruleset), report


def test_iptables_s_output_without_a_table_line():
    got, report = _read("-P FORWARD DROP\n-N DOCKER\n"
                        "-A POSTROUTING -s 10.0.0.0/24 -o eth0 -j MASQUERADE\n"
                        "-A FORWARD -i eth1 -o eth0 -j ACCEPT\n")
    assert got["masquerade"] == [{"source": "10.0.0.0/24", "out_interface": "eth0"}]
    assert got["forward"] == [{"in_interface": "eth1", "out_interface": "eth0",
                               "action": "accept"}]
    assert any("FORWARD policy is DROP" in n for n in report.notes)


def test_to_abbreviation_multiport_and_service_names():
    got, report = _read(
        "*nat\n"
        "-A PREROUTING -i ppp0 -p tcp -m multiport --dports 80,https -j DNAT --to 10.0.0.5\n"
        "-A PREROUTING -i ppp0 -p udp --dport domain -j DNAT --to-dest 10.0.0.6:5353\n"
        "COMMIT\n")
    assert got["port_forwards"] == [
        {"in_interface": "ppp0", "protocol": "tcp", "port": 80, "to_address": "10.0.0.5"},
        {"in_interface": "ppp0", "protocol": "tcp", "port": 443, "to_address": "10.0.0.5"},
        {"in_interface": "ppp0", "protocol": "udp", "port": 53, "to_address": "10.0.0.6",
         "to_port": 5353}]
    assert report.unreadable == []


@pytest.mark.parametrize("rule, reason", [
    ("-A POSTROUTING -o ppp0 -j MASQUERADE --random-fully", "--random-fully"),
    ("-A POSTROUTING -o ppp0 -j MASQUERADE --to-ports 1024-65535", "--to-ports"),
    ("-A PREROUTING -i eth1 -p tcp --dport 80 -j REDIRECT --to-ports 3128", "REDIRECT"),
    ("-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.5", "in interface"),
    ("-A POSTROUTING -s 10.0.0.0/8 ! -o tun0 -j MASQUERADE", "negated"),
    ("-A FORWARD -m limit --limit 3/min -j ACCEPT", "--limit"),
])
def test_a_rule_it_cannot_express_is_a_warning_with_line_and_reason(rule, reason):
    table = "filter" if "FORWARD" in rule else "nat"
    got, report = _read("*%s\n-A POSTROUTING -s 192.168.0.0/24 -o ppp0 -j MASQUERADE\n%s\n"
                        "COMMIT\n" % (table, rule) if table == "nat" else
                        "*filter\n%s\nCOMMIT\n" % rule)
    item, = report.unreadable
    assert item["line"] == (3 if table == "nat" else 2) and reason in item["reason"]
    assert item["rule"] == rule


def test_nft_script_with_defines_and_add_rule_commands():
    got, report = _read(
        "#!/usr/sbin/nft -f\nflush ruleset\ndefine WAN = ppp0\ndefine LAN = 192.168.7.0/24\n"
        "add table ip nat\n"
        "add chain ip nat post { type nat hook postrouting priority 100 ; }\n"
        "add chain ip nat pre { type nat hook prerouting priority -100 ; }\n"
        "add rule ip nat post ip saddr $LAN oifname $WAN masquerade\n"
        "add rule ip nat pre iifname $WAN tcp dport { 80, 443 } dnat to 192.168.7.5\n")
    assert got["masquerade"] == [{"source": "192.168.7.0/24", "out_interface": "ppp0"}]
    assert [pf["port"] for pf in got["port_forwards"]] == [80, 443]
    assert report.unreadable == []


def test_nft_json_of_a_foreign_table():
    text = json.dumps({"nftables": [
        {"table": {"family": "ip", "name": "nat"}},
        {"chain": {"family": "ip", "table": "nat", "name": "POSTROUTING", "type": "nat",
                   "hook": "postrouting", "prio": 100, "policy": "accept"}},
        {"rule": {"family": "ip", "table": "nat", "chain": "POSTROUTING", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": {"prefix": {"addr": "10.1.0.0", "len": 16}}}},
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth0"}},
            {"masquerade": None}]}}]})
    got, report = _read(text)
    assert got["masquerade"] == [{"source": "10.1.0.0/16", "out_interface": "eth0"}]
    assert report.format == "nft -j"


@pytest.mark.parametrize("text", [
    "echo 1 > /proc/sys/net/ipv4/ip_forward\n",
    "*nat\n-A PREROUTING -i ppp0 -p tcp --dport",
    "table ip nat {\n\tchain post {\n",
    "table ip nat {\n\tgarbage here\n}\n",
])
def test_text_that_is_no_ruleset_or_is_cut_short_is_an_error(text):
    with pytest.raises(rules.ParseError):
        importer.read(text)


def test_duplicate_rules_are_read_once_and_conflicts_reported():
    got, report = _read("*nat\n-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE\n"
                        "-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE\n"
                        "-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j SNAT --to-source 1.2.3.4\n"
                        "COMMIT\n")
    assert got["masquerade"] == [{"source": "10.0.0.0/8", "out_interface": "eth0"}]
    assert any("same rule as line 2" in n for n in report.notes)
    assert report.unreadable == [] and got["snat"] == [
        {"source": "10.0.0.0/8", "out_interface": "eth0", "to_address": "1.2.3.4"}]
