# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""``state: parsed`` for text from the field: a hand-made gateway, or a host that also runs
Docker, ufw, firewalld, Tailscale...

Reads ``iptables-save``, ``iptables -S``, lines of ``iptables`` commands (also pasted
without their ``*nat`` line, with ``sudo``, inside a shell script), ``nft list ruleset``,
``nft -f`` scripts (``define``, ``add rule``) and ``nft -j`` output. Every rule the model
can express becomes an entry. The chains of other managers and the jumps to them are
skipped and counted; every other rule in the chains the model covers (nat PREROUTING and
POSTROUTING, filter FORWARD, raw PREROUTING, and nft base chains on those hooks) that the
model cannot express is reported with its line number and the reason. Rules elsewhere
(INPUT, OUTPUT, mangle...) are out of the model's scope and counted.

Only text that is not a ruleset at all (no rule, chain or table in it), or that is cut
short in the middle of a rule, is an error.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import re

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import foreign
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat.rules import ParseError

# (table, built-in chain) -> the part of the model it holds
IPT_SCOPE = {("nat", "PREROUTING"): "prerouting", ("nat", "POSTROUTING"): "postrouting",
             ("filter", "FORWARD"): "forward", ("raw", "PREROUTING"): "helpers"}
IPT_BUILTINS = frozenset(("PREROUTING", "POSTROUTING", "FORWARD", "INPUT", "OUTPUT"))
_NAT_TARGETS = frozenset(("masquerade", "snat", "dnat", "redirect", "netmap"))
_RAW_TARGETS = frozenset(("helper", "notrack"))
_MANGLE_TARGETS = frozenset(("mark", "connmark", "tproxy", "checksum", "tcpmss", "dscp", "tos",
                             "ttl", "hl", "classify", "tee"))
_COUNTERS = re.compile(r"^\[[0-9]+:[0-9]+\]\Z")
_IPT_WORDS = ("iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy",
              "iptables-nft", "ip6tables-nft")
# Docker's own rules in the built-in chains name its bridges and little else.
_DOCKER_CHAINS_NAMING_BRIDGES = {"DOCKER": "-i", "DOCKER-ISOLATION-STAGE-1": "-i",
                                 "DOCKER-BRIDGE": "-o", "DOCKER-CT": "-o",
                                 "DOCKER-FORWARD": "-i", "DOCKER-ISOLATION-STAGE-2": "-o"}


class Report:
    """What an import read, skipped and could not read."""

    def __init__(self, text_format):
        self.format = text_format
        self.read = 0
        self.unreadable = []  # {"line", "rule", "reason"}
        self.foreign = {}  # manager -> {"rules": n, "chains": set}
        self.out_of_scope = {}  # "table CHAIN" -> number of rules
        self.notes = []
        self.lines = {}  # line number -> read, unreadable, foreign, outside

    def cannot(self, line, text, reason):
        self.unreadable.append({"line": line, "rule": text.strip(), "reason": reason})
        self.lines[line] = "unreadable"

    def other(self, manager, chain=None, line=None):
        if line is not None:
            self.lines[line] = "foreign"
        entry = self.foreign.setdefault(manager, {"rules": 0, "chains": set()})
        entry["rules"] += 1
        if chain:
            entry["chains"].add(chain)

    def outside(self, where, line=None):
        if line is not None:
            self.lines[line] = "outside"
        self.out_of_scope[where] = self.out_of_scope.get(where, 0) + 1

    def as_dict(self):
        return {
            "format": self.format, "read": self.read,
            "unreadable": sorted(self.unreadable, key=lambda u: u["line"]),
            "foreign": dict((k, {"rules": v["rules"], "chains": sorted(v["chains"])})
                            for k, v in sorted(self.foreign.items())),
            "out_of_scope": dict(sorted(self.out_of_scope.items())),
            "notes": list(self.notes),
        }


def warnings(report):
    """The report as warnings: one per reason (with every line number), then the skipped
    managers, then why the result is empty when it is."""
    out, by_reason = [], {}
    for item in report["unreadable"]:
        by_reason.setdefault(item["reason"], []).append(item)
    for reason, items in sorted(by_reason.items(), key=lambda kv: kv[1][0]["line"]):
        lines = [str(i["line"]) for i in items]
        out.append("running_config %s %s: not read, %s: %s%s" % (
            "line" if len(lines) == 1 else "lines", _numbers(lines), reason,
            items[0]["rule"][:200], " (and %d more like it)" % (len(items) - 1)
            if len(items) > 1 else ""))
    for manager, info in report["foreign"].items():
        out.append("running_config: %d rule%s of %s skipped (%s), left to it" % (
            info["rules"], "" if info["rules"] == 1 else "s", manager,
            ", ".join(info["chains"][:8]) or "its interfaces and tables"))
    out.extend(report["notes"])
    return out


def _numbers(lines):
    """Line numbers with runs folded: "3, 18-117, 120"."""
    numbers, out = sorted(set(int(n) for n in lines)), []
    for number in numbers:
        if out and out[-1][1] == number - 1:
            out[-1][1] = number
        else:
            out.append([number, number])
    return ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in out)


# ---------------------------------------------------------------- entries

class Cannot(Exception):
    """A rule the model cannot express; the message says why."""


def _net(value, what):
    """A CIDR network as the model wants it (iptables and nft mask host bits themselves)."""
    try:
        return ipaddress.ip_network(value, strict=False).with_prefixlen
    except ValueError:
        return value  # the model names the field and the value


def _one(values, what):
    if len(values) > 1:
        raise Cannot("matches several %s (%s): the model's entry holds one"
                     % (what, ", ".join(values)))
    return values[0] if values else None


def _common_checks(rule, allowed):
    if rule.unknown:
        raise Cannot("matches or options the model has no field for: %s"
                     % "; ".join(rule.unknown))
    for field, flag in (("iif", "iif_neg"), ("oif", "oif_neg"), ("saddr", "saddr_neg"),
                        ("daddr", "daddr_neg"), ("proto", "proto_neg"),
                        ("dports", "dports_neg"), ("ct_state", "ct_state_neg")):
        if getattr(rule, flag) and getattr(rule, field):
            raise Cannot("negated match on %s (%s): the model matches only what is given"
                         % (_FIELD_WORDS[field], _show(getattr(rule, field))))
    for field in ("iif", "oif", "saddr", "daddr", "proto", "dports", "ct_state"):
        if getattr(rule, field) and field not in allowed:
            raise Cannot(_NOT_ALLOWED[field] % _show(getattr(rule, field)))
    if rule.ct_dnat and "ct_dnat" not in allowed:
        raise Cannot("matches DNATed connections (ctstate DNAT)")


def _show(value):
    if isinstance(value, (tuple, list, frozenset, set)):
        return ",".join(sorted(value)) if isinstance(value, (set, frozenset)) else ",".join(value)
    return str(value)


_FIELD_WORDS = {"iif": "the in interface", "oif": "the out interface",
                "saddr": "the source", "daddr": "the destination", "proto": "the protocol",
                "dports": "the port", "ct_state": "the connection state"}
_NOT_ALLOWED = {
    "iif": "matches an in interface (%s) where the model's entry has none",
    "oif": "matches an out interface (%s) where the model's entry has none",
    "saddr": "matches a source (%s) where the model's entry has none",
    "daddr": "matches a destination (%s): a port forward matches every address of its "
             "in_interface, a masquerade or SNAT a source and an out interface",
    "proto": "matches a protocol (%s) where the model's entry has none",
    "dports": "matches a port (%s) where the model's entry has none",
    "ct_state": "matches a connection state (%s) where the model's entry has none",
}


def _split_target(value, family):
    """"10.0.0.5:80", "[fd00::5]:80", "10.0.0.5" -> (address, port or None)."""
    if value.startswith("["):
        addr, _sep, port = value[1:].partition("]")
        return addr, port.lstrip(":") or None
    if value.count(":") == 1:
        addr, port = value.split(":")
        return addr, port or None
    return value, None


def entries(scope, rule):
    """[(kind, entry dict)] for one rule of a chain in the model's scope; raises Cannot."""
    verdict = rule.verdict
    if verdict is None:
        if rule.unknown:
            raise Cannot("matches or options the model has no field for: %s"
                         % "; ".join(rule.unknown))
        raise Cannot("a rule without a verdict")
    if verdict in ("jump", "goto"):
        raise Cannot("jumps to chain %s, whose rules the model cannot hold (it has no "
                     "chains of its own)" % rule.target)
    if scope == "postrouting":
        if verdict not in ("masquerade", "snat"):
            raise Cannot("target %s in POSTROUTING: the model holds masquerade and SNAT "
                         "there" % verdict.upper())
        _common_checks(rule, ("oif", "saddr"))
        for key, value in rule.args:
            if key in ("random", "random_fully", "persistent", "ports"):
                raise Cannot("%s: the model's %s has no such option" % (
                    {"random_fully": "--random-fully", "ports": "--to-ports %s" % value,
                     "random": "--random", "persistent": "--persistent"}[key], verdict))
        if not rule.oif:
            raise Cannot("no out interface (-o): the model's %s needs out_interface"
                         % verdict)
        entry = {"out_interface": rule.oif}
        source = _one(rule.saddr, "sources")
        if source:
            entry["source"] = _net(source, "source")
        if verdict == "snat":
            to = foreign.arg(rule, "to")
            if not to:
                raise Cannot("SNAT without --to-source")
            addr, port = _split_target(to, rule.family)
            if port:
                raise Cannot("SNAT to a port (%s): the model's snat has no port" % to)
            entry["to_address"] = addr
        if rule.comment:
            entry["comment"] = rule.comment
        return [(verdict, entry)]
    if scope == "prerouting":
        if verdict == "redirect":
            raise Cannot("REDIRECT to the gateway itself: the model has no port forward "
                         "to the gateway's own address")
        if verdict != "dnat":
            raise Cannot("target %s in PREROUTING: the model holds port forwards (DNAT) "
                         "there" % verdict.upper())
        _common_checks(rule, ("iif", "saddr", "proto", "dports"))
        if not rule.iif:
            raise Cannot("DNAT without an in interface (-i): a port forward is bound to the "
                         "interface its traffic comes in by")
        if rule.proto not in ("tcp", "udp"):
            raise Cannot("DNAT of protocol %s: port forwards are tcp or udp" % rule.proto)
        if not rule.dports:
            raise Cannot("DNAT without a port: the model's port forward has one (1:1 NAT "
                         "of a whole address is not in the model)")
        to = foreign.arg(rule, "to")
        if not to:
            raise Cannot("DNAT without --to-destination")
        addr, to_port = _split_target(to, rule.family)
        out = []
        for port in rule.dports:
            number = foreign.ports_text(port)
            if number is None:
                raise Cannot("port %s is not a number or a service this module knows" % port)
            entry = {"in_interface": rule.iif, "protocol": rule.proto, "port": number,
                     "to_address": addr}
            if to_port:
                entry["to_port"] = to_port.replace(":", "-")
            source = _one(rule.saddr, "sources")
            if source:
                entry["source"] = _net(source, "source")
            if rule.comment:
                entry["comment"] = rule.comment
            out.append(("port_forwards", entry))
        return out
    if scope == "helpers":
        if verdict != "helper":
            raise Cannot("target %s in raw PREROUTING: the model holds conntrack helpers "
                         "there" % verdict.upper())
        _common_checks(rule, ("proto", "dports"))
        port = _one(rule.dports, "ports")
        if not port:
            raise Cannot("a helper without a port")
        return [("helpers", {"helper": foreign.arg(rule, "helper"), "protocol": rule.proto,
                             "port": foreign.ports_text(port) or port})]
    # forward
    if verdict not in m.FORWARD_ACTIONS:
        raise Cannot("target %s in FORWARD: the model's forward rules accept, drop or "
                     "reject" % verdict.upper())
    dnat_only = (rule.ct_dnat and not rule.ct_state) or (
        not rule.ct_dnat and rule.ct_state == frozenset(["dnat"]) and not rule.ct_state_neg)
    if dnat_only and verdict == "accept" and not any(
            (rule.iif, rule.oif, rule.saddr, rule.daddr, rule.proto, rule.dports, rule.unknown)):
        return [("dnat_accept", {})]
    _common_checks(rule, ("iif", "oif", "saddr", "daddr", "proto", "dports", "ct_state"))
    entry = {"action": verdict}
    for field, key in (("iif", "in_interface"), ("oif", "out_interface")):
        if getattr(rule, field):
            entry[key] = getattr(rule, field)
    for field, key in (("saddr", "source"), ("daddr", "destination")):
        value = _one(getattr(rule, field), "addresses")
        if value:
            entry[key] = _net(value, key)
    if rule.proto:
        entry["protocol"] = rule.proto
    if rule.dports:
        port = _one(rule.dports, "ports")
        number = foreign.ports_text(port)
        if number is None:
            raise Cannot("port %s is not a number or a service this module knows" % port)
        entry["port"] = number
    if rule.ct_state:
        if rule.ct_state & {"dnat", "snat"}:
            raise Cannot("matches NAT connection states (%s) in a list the model's "
                         "ct_state cannot hold" % _show(rule.ct_state))
        entry["ct_state"] = sorted(rule.ct_state)
    if rule.comment:
        entry["comment"] = rule.comment
    return [("forward", entry)]


class _Collector:
    """Entries in the order read, validated one by one; a bad one becomes a report line."""

    def __init__(self, report):
        self.report = report
        self.items = []  # (kind, built entry, line)
        self.seen = {}  # (kind, identity) -> (entry, line)
        self.dnat_accept = []

    def add(self, line, text, scope, rule, position=None):
        try:
            made = entries(scope, rule)
        except Cannot as exc:
            self.report.cannot(line, text, str(exc))
            return False
        if made and made[0][0] == "dnat_accept":
            self.dnat_accept.append(line)
            return False
        built = []
        for kind, entry in made:
            try:
                built.extend((kind, e) for e in m.build_config({kind: [entry]})[kind])
            except m.ConfigError as exc:
                self.report.cannot(line, text, "the model refuses it: %s" % str(exc).split(
                    ": ", 1)[-1])
                return False
        for kind, entry in built:
            key = (kind, m.identity(kind, entry))
            if key in self.seen:
                first, first_line = self.seen[key]
                if first == entry or (kind == "forward" and first._replace(comment=None) ==
                                      entry._replace(comment=None)):
                    self.report.notes.append("running_config line %d: the same rule as line "
                                             "%d, read once" % (line, first_line))
                    continue
                self.report.cannot(line, text, "conflicts with line %d (same %s)" % (
                    first_line, ", ".join(str(v) for v in key[1] if v not in (None, False))))
                return False
        for kind, entry in built:
            key = (kind, m.identity(kind, entry))
            if key in self.seen:
                continue
            self.seen[key] = (entry, line)
            item = (kind, entry, line)
            if position is not None and kind == "forward":
                self.items.insert(min(position, len(self.items)), item)
            else:
                self.items.append(item)
        self.report.read += 1
        self.report.lines[line] = "read"
        return True

    def ruleset(self):
        config = {}
        for kind, entry, line in self.items:
            config.setdefault(kind, []).append((entry, line))
        out = m.empty_ruleset()
        for kind, pairs in config.items():
            kept = []
            for entry, line in pairs:
                trial = kept + [entry]
                if kind == "port_forwards":
                    try:
                        m.build_config({kind: [m.entry_to_dict(kind, e) for e in trial]})
                    except m.ConfigError as exc:
                        self.report.cannot(line, _entry_text(kind, entry),
                                           "the model refuses it: %s" % str(exc).split(
                                               ": ", 1)[-1])
                        continue
                kept.append(entry)
            out[kind] = m.canonical(kind, kept)
        if self.dnat_accept and not out["port_forwards"]:
            for line in self.dnat_accept:
                self.report.cannot(line, "accept of DNATed connections",
                                   "the model adds this rule only with port forwards")
        return out


def _entry_text(kind, entry):
    return "%s %s" % (kind, json.dumps(m.entry_to_dict(kind, entry), sort_keys=True))


# ---------------------------------------------------------------- iptables

def _family_marker(line):
    low = line.lower()
    if "ip6tables" in low:
        return 6
    if "iptables" in low or "xtables" in low:
        return 4
    return None


def _guess_table(chain, rule):
    verdict = rule.verdict or ""
    if verdict in _NAT_TARGETS:
        return "nat"
    if verdict in _RAW_TARGETS:
        return "raw"
    if verdict in _MANGLE_TARGETS:
        return "mangle"
    if chain in ("PREROUTING", "POSTROUTING"):
        return "nat"
    return "filter"


class _Line:
    __slots__ = ("number", "text", "op", "table", "chain", "args", "rule", "family",
                 "position", "explicit_table")

    def __init__(self, number, text, op, table, chain, args, family, explicit_table):
        self.number, self.text, self.op, self.table, self.chain = number, text, op, table, chain
        self.args, self.rule, self.family, self.position = args, None, family, None
        self.explicit_table = explicit_table


def _command_words(words):
    """``[sudo] iptables [-w N] [-t T] -A CHAIN ...`` -> (tool, table or None, rest)."""
    if words and words[0] == "sudo":
        words = words[1:]
    tool, words, table = words[0], words[1:], None
    while words and words[0] not in ("-A", "--append", "-I", "--insert", "-N", "--new-chain",
                                     "-P", "--policy", "-D", "--delete", "-F", "--flush",
                                     "-X", "--delete-chain", "-Z", "--zero", "-S",
                                     "--list-rules", "-L", "--list"):
        option = words.pop(0)
        if option in ("-t", "--table") and words:
            table = words.pop(0)
        elif option in ("-w", "--wait", "-W", "--wait-interval") and words and \
                m.digits(words[0].replace(".", "")):
            words.pop(0)
    return tool, table, words


def iptables_lines(text, report):
    """Split iptables text into _Line records; raises ParseError for text cut short."""
    out, table, family, headers = [], None, 4, False
    shell = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            marker = _family_marker(line) if ("save" in line or line[1:].strip()
                                              .startswith(("ip6tables", "iptables"))) else None
            if marker:
                family = marker
            continue
        if line == "COMMIT":
            continue
        if line.startswith("*"):
            table, headers = line[1:].strip(), True
            continue
        if line.startswith(":"):
            fields = line[1:].split()
            if not fields:
                raise ParseError("line %d: a chain line without a name: %s" % (number, line))
            out.append(_Line(number, line, "decl", table, fields[0], fields[1:], family,
                             headers))
            continue
        words = line.split()
        if words[0].startswith("["):
            if not _COUNTERS.match(words[0]):
                raise ParseError("line %d: packet and byte counters cut short: %s"
                                 % (number, line[:200]))
            if len(words) == 1:
                raise ParseError("line %d: counters without a rule: %s" % (number, line[:200]))
            line = line.split(None, 1)[1]
            words = words[1:]
        explicit, line_table, line_family = headers, table, family
        if words[0] in _IPT_WORDS or (words[0] == "sudo" and words[1:2] and
                                      words[1] in _IPT_WORDS):
            try:
                words = foreign.split_words(line)
            except ValueError as exc:
                raise ParseError("line %d: %s: %s" % (number, exc, line[:200]))
            tool, command_table, words = _command_words(words)
            line_family = 6 if tool.startswith("ip6") else 4
            line_table, explicit = command_table or "filter", True
            if not words:
                shell.append(number)
                continue
        elif not words[0].startswith("-"):
            shell.append(number)
            continue
        else:
            try:
                words = foreign.split_words(line)
            except ValueError as exc:
                raise ParseError("line %d: %s: %s" % (number, exc, line[:200]))
        op = words[0]
        if op in ("-A", "--append", "-I", "--insert", "-D", "--delete"):
            if len(words) < 2:
                raise ParseError("line %d: %s without a chain: %s" % (number, op, line[:200]))
            record = _Line(number, line, op, line_table, words[1], words[2:], line_family,
                           explicit)
            if op in ("-I", "--insert"):
                record.position = 1
                if record.args[:1] and m.digits(record.args[0]):
                    record.position = int(record.args[0])
                    record.args = record.args[1:]
            try:
                record.rule = foreign.parse_iptables(record.args)
            except foreign.CutShort as exc:
                raise ParseError("line %d: %s: %s" % (number, exc, line[:200]))
            if not explicit:
                record.table = _guess_table(record.chain, record.rule)
            out.append(record)
        elif op in ("-N", "--new-chain", "-P", "--policy"):
            if len(words) < 2:
                raise ParseError("line %d: %s without a chain: %s" % (number, op, line[:200]))
            out.append(_Line(number, line, "decl", line_table, words[1], words[2:],
                             line_family, explicit))
        elif op in ("-F", "--flush", "-X", "--delete-chain", "-Z", "--zero"):
            report.notes.append("running_config line %d: %s ignored (parsed reads the rules "
                                "a text adds)" % (number, line[:80]))
        else:
            report.cannot(number, line, "not an iptables rule or chain line")
    if shell:
        report.notes.append("running_config: %d line%s that %s no iptables rule skipped "
                            "(lines %s)" % (len(shell), "" if len(shell) == 1 else "s",
                                            "is" if len(shell) == 1 else "are",
                                            _numbers([str(n) for n in shell])))
    return out


def docker_bridges(lines):
    bridges = set()
    for record in lines:
        if record.op == "decl" or record.rule is None:
            continue
        flag = _DOCKER_CHAINS_NAMING_BRIDGES.get(record.chain)
        if flag == "-i" and record.rule.iif and not record.rule.iif_neg:
            bridges.add(record.rule.iif)
        elif flag == "-o" and record.rule.oif and not record.rule.oif_neg:
            bridges.add(record.rule.oif)
    return bridges


def _docker_shape(rule, bridges):
    """Whether a rule in a built-in chain is one of the rules Docker adds there."""
    named = [n for n in (rule.iif, rule.oif) if n]
    if not named or rule.unknown or not all(
            n in bridges or foreign.interface_manager(n) == "Docker" for n in named):
        if rule.verdict == "masquerade" and rule.saddr and rule.daddr and \
                rule.saddr == rule.daddr and not rule.iif and not rule.oif:
            return rule.saddr[0].endswith("/32") or rule.saddr[0].endswith("/128")
        return False
    if rule.daddr and rule.verdict != "drop":
        return False
    if rule.verdict == "masquerade":
        return bool(rule.oif_neg and rule.saddr)
    return rule.verdict in ("accept", "drop", "jump") and not rule.saddr and not rule.dports


def manager_of_rule(record, bridges):
    """The manager whose rule this is (by chain, jump target, or bridge), or None."""
    manager = foreign.chain_manager(record.chain)
    if manager:
        return manager, record.chain
    rule = record.rule
    if rule.verdict in ("jump", "goto"):
        manager = foreign.chain_manager(rule.target)
        if manager:
            return manager, rule.target
    if rule.comment and rule.comment.startswith("generated for LXD network"):
        return "LXD", None
    if _docker_shape(rule, bridges):
        return "Docker", None
    named = [n for n in (rule.iif, rule.oif) if n]
    managers = set(foreign.interface_manager(n) for n in named)
    if named and len(managers) == 1 and None not in managers and not rule.unknown \
            and not rule.saddr and not rule.daddr and not rule.dports:
        return managers.pop(), None
    return None, None


def import_iptables(text):
    report = Report("iptables")
    lines = iptables_lines(text, report)
    if not lines:
        raise ParseError("no iptables rule, chain or table found in running_config")
    bridges = docker_bridges(lines)
    declared, user_rules, reached = {}, {}, {}
    for record in lines:
        if record.op == "decl":
            key = (record.table, record.chain)
            if record.chain not in IPT_BUILTINS:
                declared.setdefault(key, record)
            elif record.args and record.args[0] == "DROP" and record.chain == "FORWARD":
                report.notes.append(
                    "running_config line %d: the FORWARD policy is DROP; the model's forward "
                    "rules cannot hold a policy (add {action: drop} as the last forward "
                    "rule to keep it)" % record.number)
    collector = _Collector(report)
    for record in lines:
        if record.op == "decl":
            continue
        scope = IPT_SCOPE.get((record.table, record.chain))
        manager, chain = manager_of_rule(record, bridges)
        if manager:
            report.other(manager, chain, record.number)
            continue
        if record.chain not in IPT_BUILTINS:
            user_rules.setdefault((record.table, record.chain), []).append(record)
            continue
        if scope is None:
            report.outside("%s %s" % (record.table or "filter", record.chain), record.number)
            continue
        if record.rule.verdict in ("jump", "goto"):
            reached.setdefault((record.table, record.rule.target), []).append(record.number)
        if record.op in ("-D", "--delete"):
            report.cannot(record.number, record.text, "deletes a rule (-D): parsed reads the "
                                                      "rules a text adds")
            continue
        read = collector.add(record.number, record.text, scope, record.rule,
                             record.position - 1 if record.position else None)
        if read and record.family == 6 and not (record.rule.saddr or record.rule.daddr):
            report.notes.append("running_config line %d: read from ip6tables; the model "
                                "applies an entry without addresses to IPv4 as well"
                                % record.number)
    for (table, chain), records in sorted(user_rules.items(), key=lambda kv: kv[1][0].number):
        if (table, chain) in reached or any(chain == c for _t, c in reached):
            decl = declared.get((table, chain))
            first = decl or records[0]
            report.cannot(first.number, first.text if decl is None or decl.text.startswith("-N")
                          else decl.text,
                          "chain %s of its own, reached from a chain the model covers: its %d "
                          "rule%s not read (the model has no chains of its own)" % (
                              chain, len(records), "" if len(records) == 1 else "s are"))
        else:
            for record in records:
                report.outside("%s %s" % (table or "filter", chain), record.number)
    for (table, chain), decl in declared.items():
        if (table, chain) not in user_rules and ((table, chain) in reached or
                                                 any(chain == c for _t, c in reached)) \
                and not foreign.chain_manager(chain):
            report.cannot(decl.number, decl.text, "chain %s of its own, reached from a chain "
                                                  "the model covers (it holds no rule here)"
                          % chain)
    return collector.ruleset(), report


# ---------------------------------------------------------------- nft text

_BLOCKS = frozenset(("table", "chain", "set", "map", "flowtable", "counter", "quota", "limit",
                     "ct", "secmark", "synproxy", "meter"))
_HOOK_SCOPE = {("nat", "prerouting"): "prerouting", ("nat", "postrouting"): "postrouting",
               ("filter", "forward"): "forward"}
_FAMILY = {"ip": 4, "ip6": 6}


class _Chain:
    def __init__(self, family, table, name, line):
        self.family, self.table, self.name, self.line = family, table, name, line
        self.type = self.hook = self.policy = None
        self.rules = []  # (line, tokens, text)
        self.declared = line is not None


def _statements(text):
    """(line number, tokens) for every statement, with "{" / "}" as statements of their own
    where they open or close a block (a set's braces stay inside their statement)."""
    pending, depth, start, out = [], 0, None, []
    for number, raw in enumerate(text.split("\n"), 1):
        line = _strip_comment(raw)
        for token in foreign.nft_tokens(line):
            if start is None:
                start = number
            if token == "{" and depth == 0 and pending and _opens_block(pending):
                out.append((start, pending))
                out.append((number, ["{"]))
                pending, start = [], None
                continue
            if token == "}" and depth == 0:
                if pending:
                    out.append((start, pending))
                out.append((number, ["}"]))
                pending, start = [], None
                continue
            if token == ";" and depth == 0:
                if pending:
                    out.append((start, pending))
                pending, start = [], None
                continue
            if token == "{":
                depth += 1
            elif token == "}":
                depth -= 1
            pending.append(token)
        if depth == 0 and pending:
            out.append((start, pending))
            pending, start = [], None
    if depth or pending:
        raise ParseError("line %d: a brace opened here is never closed" % (start or 0))
    return out


def _strip_comment(line):
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:index]
    return line


def _opens_block(tokens):
    """Whether a "{" after ``tokens`` opens a block (a table, chain, set...), not a set of
    values in a rule (``ct state { established, related }``)."""
    words = tokens[1:] if tokens[0] in ("add", "create") else tokens
    if not words:
        return False
    if words[0] in ("table", "chain", "set", "map", "flowtable"):
        return True
    if words[0] == "ct":
        return len(words) >= 3 and words[1] in ("helper", "timeout", "expectation")
    return words[0] in _BLOCKS and len(words) in (2, 4)


def _nft_table_key(words):
    """``[family] name`` -> (family, name); nft's default family is ip."""
    if words and words[0] in foreign._NFT_FAMILIES:
        return words[0], (words[1] if len(words) > 1 else "")
    return "ip", (words[0] if words else "")


def import_nft_text(text):
    report = Report("nft")
    tables, order, defines = {}, [], {}
    stack = []  # ("table", key) / ("chain", _Chain) / ("other", None)
    statements = _statements(text)

    def chain_of(family, table, name, line):
        key = (family, table)
        tables.setdefault(key, {})
        if key not in order:
            order.append(key)
        if name not in tables[key]:
            tables[key][name] = _Chain(family, table, name, line)
        elif line and not tables[key][name].declared:
            tables[key][name].line, tables[key][name].declared = line, True
        return tables[key][name]

    for index, (number, tokens) in enumerate(statements):
        opens = index + 1 < len(statements) and statements[index + 1][1] == ["{"]
        head = tokens[0]
        if tokens == ["{"]:
            continue
        if tokens == ["}"]:
            if not stack:
                raise ParseError("line %d: '}' closes no block" % number)
            stack.pop()
            continue
        context = stack[-1] if stack else None
        if head == "define":
            _define(tokens, defines, number)
            continue
        if head in ("flush", "delete", "destroy", "list", "reset", "rename"):
            continue
        if head == "include":
            if not context or context[0] != "table" or not _table_foreign(context[1]):
                report.cannot(number, " ".join(tokens), "include: the files it names are not "
                                                        "read")
            continue
        if head in ("add", "create", "insert", "replace") and len(tokens) > 1:
            _command(tokens, number, opens, stack, chain_of, report, defines)
            continue
        if head == "table":
            key = _nft_table_key(tokens[1:])
            if key not in order:
                order.append(key)
                tables.setdefault(key, {})
            if opens:
                stack.append(("table", key))
            continue
        if context and context[0] == "table" and head == "chain":
            chain = chain_of(context[1][0], context[1][1], _unq(tokens[1]), number)
            stack.append(("chain", chain) if opens else ("other", None))
            continue
        if context and context[0] == "table" and head in _BLOCKS:
            if opens:
                stack.append(("other", None))
            continue
        if context and context[0] == "chain":
            _chain_statement(context[1], number, tokens)
            continue
        if context and context[0] == "other":
            continue
        if context and context[0] == "table":
            raise ParseError("line %d: %r inside table %s %s is not a chain, set or map"
                             % (number, " ".join(tokens)[:80], context[1][0], context[1][1]))
        if head.startswith("#!") or head in ("nft",):
            continue
        raise ParseError("line %d: %r is not an nft statement this module reads"
                         % (number, " ".join(tokens)[:80]))
    if stack:
        raise ParseError("the text ends inside a block")
    if not order:
        raise ParseError("no nft table or rule found in running_config")
    collector = _Collector(report)
    for key in order:
        _read_table(key, tables.get(key, {}), collector, report, defines)
    return collector.ruleset(), report


def _unq(word):
    return word[1:-1] if word.startswith('"') and word.endswith('"') else word


def _define(tokens, defines, number):
    if len(tokens) < 4 or tokens[2] != "=":
        raise ParseError("line %d: define without a value: %s" % (number, " ".join(tokens)))
    value = tokens[3:]
    if value[:1] == ["{"]:
        items = [_unq(t) for t in value[1:-1] if t != ","]
        defines[tokens[1]] = [defines.get(i[1:], i) if i.startswith("$") else i for i in items]
    else:
        word = _unq(value[0])
        defines[tokens[1]] = defines.get(word[1:], word) if word.startswith("$") else word


def _command(tokens, number, opens, stack, chain_of, report, defines):
    """``add table|chain|rule ...`` (nft -f scripts)."""
    what, words = tokens[1], tokens[2:]
    if what == "table":
        if opens:
            stack.append(("table", _nft_table_key(words)))
        return
    if what in ("chain", "rule"):
        if not words:
            raise ParseError("line %d: %s without a table" % (number, " ".join(tokens)))
        if words[0] in foreign._NFT_FAMILIES:
            family, words = words[0], words[1:]
        else:
            family = "ip"
        if len(words) < 2:
            raise ParseError("line %d: %s without a chain" % (number, " ".join(tokens)))
        table, name, rest = words[0], _unq(words[1]), words[2:]
        chain = chain_of(family, table, name, number if what == "chain" else None)
        if what == "chain":
            if opens:
                stack.append(("chain", chain))
            return
        if rest[:1] in (["position"], ["handle"], ["index"]):
            rest = rest[2:]
        chain.rules.append((number, rest, _display(rest)))
        return
    if opens:
        stack.append(("other", None))


def _chain_statement(chain, number, tokens):
    if tokens[0] == "type" and "hook" in tokens:
        chain.type = tokens[1]
        chain.hook = tokens[tokens.index("hook") + 1]
        if "policy" in tokens:
            chain.policy = tokens[tokens.index("policy") + 1]
        return
    if tokens[0] == "policy" and len(tokens) > 1:
        chain.policy = tokens[1]
        return
    if tokens[0] in ("devices", "comment", "flags"):
        return
    chain.rules.append((number, tokens, _display(tokens)))


def _display(tokens):
    """A statement's words as nft prints them."""
    return " ".join(tokens).replace(" ,", ",")


def _table_foreign(key):
    return foreign.table_manager(key[1])


def _scope_of(chain):
    if chain.hook:
        return _HOOK_SCOPE.get((chain.type, chain.hook))
    low = chain.name.lower()
    for word, scope in (("postrouting", "postrouting"), ("prerouting", "prerouting"),
                        ("forward", "forward")):
        if word in low:
            return scope
    return None


def _read_table(key, chains, collector, report, defines):
    family, name = key
    manager = foreign.table_manager(name)
    if manager:
        for chain in chains.values():
            for number, _tokens, _text in chain.rules:
                report.other(manager, "table %s %s" % key, number)
        if not any(c.rules for c in chains.values()):
            report.other(manager, "table %s %s" % key)
            report.foreign[manager]["rules"] -= 1
        return
    reached = {}
    for chain in chains.values():
        scope = _scope_of(chain)
        if chain.hook and scope is None:
            for number, _tokens, _text in chain.rules:
                report.outside("%s %s %s (hook %s)" % (family, name, chain.name, chain.hook),
                               number)
            continue
        chain_man = foreign.chain_manager(chain.name)
        if chain_man:
            for number, _tokens, _text in chain.rules:
                report.other(chain_man, chain.name, number)
            continue
        if scope is None:
            continue  # a regular chain: read below, by the jumps to it
        if chain.policy == "drop" and scope == "forward":
            report.notes.append(
                "running_config line %d: chain %s of table %s %s drops forwarded traffic by "
                "policy; the model's forward rules cannot hold a policy (add {action: drop} as "
                "the last forward rule to keep it)" % (chain.line or 0, chain.name, family,
                                                       name))
        for number, tokens, text in chain.rules:
            try:
                rule = foreign.parse_nft(tokens, defines, _FAMILY.get(family))
            except foreign.CutShort as exc:
                raise ParseError("line %d: %s" % (number, exc))
            if rule.verdict in ("jump", "goto"):
                target_man = foreign.chain_manager(rule.target)
                if target_man:
                    report.other(target_man, rule.target, number)
                    continue
                reached.setdefault(rule.target, number)
            collector.add(number, text, scope, rule)
    for chain in chains.values():
        if chain.hook or foreign.chain_manager(chain.name):
            continue
        if chain.name in reached:
            report.cannot(chain.line or reached[chain.name], "chain %s" % chain.name,
                          "chain %s of its own, reached from a chain the model covers: its %d "
                          "rule%s not read (the model has no chains of its own)" % (
                              chain.name, len(chain.rules),
                              "" if len(chain.rules) == 1 else "s are"))
        else:
            for number, _tokens, _text in chain.rules:
                report.outside("%s %s %s" % (family, name, chain.name), number)


# ---------------------------------------------------------------- nft -j

def import_nft_json(text):
    try:
        items = json.loads(text)["nftables"]
    except RecursionError:
        raise ParseError("not nft -j output: nested too deeply")
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError("not nft -j output: %s" % str(exc)[:200])
    if not isinstance(items, list):
        raise ParseError("not nft -j output: 'nftables' is not a list")
    report = Report("nft -j")
    chains, order = {}, []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            raise ParseError("not nft -j output: %s" % str(item)[:100])
        (kind, body), = item.items()
        if not isinstance(body, dict):
            raise ParseError("not nft -j output: %s is not an object" % kind)
        if kind == "chain":
            key = (body.get("family"), body.get("table"))
            if key not in order:
                order.append(key)
            chain = chains.setdefault(key, {}).setdefault(
                body.get("name"), _Chain(key[0], key[1], body.get("name"), None))
            chain.type, chain.hook, chain.policy = body.get("type"), body.get("hook"), \
                body.get("policy")
        elif kind == "rule":
            key = (body.get("family"), body.get("table"))
            if key not in order:
                order.append(key)
            chain = chains.setdefault(key, {}).setdefault(
                body.get("chain"), _Chain(key[0], key[1], body.get("chain"), None))
            chain.rules.append((len(chain.rules) + 1, body.get("expr"), json.dumps(
                body.get("expr"))[:300]))
    if not order:
        raise ParseError("no nft table or rule found in running_config")
    collector = _Collector(report)
    for key in order:
        family, name = key
        manager = foreign.table_manager(name)
        for chain in chains.get(key, {}).values():
            if manager or foreign.chain_manager(chain.name):
                for _rule in chain.rules:
                    report.other(manager or foreign.chain_manager(chain.name), chain.name)
                continue
            scope = _scope_of(chain) if chain.hook else None
            for number, expr, text in chain.rules:
                if scope is None:
                    report.outside("%s %s %s" % (family, name, chain.name))
                    continue
                rule = _json_rule(expr, _FAMILY.get(family))
                collector.add(number, "%s %s %s: %s" % (family, name, chain.name, text),
                              scope, rule)
    return collector.ruleset(), report


def _json_rule(expr, family):
    rule = foreign.parse_nft_json(expr, family)
    for stmt in expr if isinstance(expr, list) else ():
        if isinstance(stmt, dict) and len(stmt) == 1:
            (key, body), = stmt.items()
            if key in ("snat", "dnat") and isinstance(body, dict):
                addr, port = body.get("addr"), body.get("port")
                if isinstance(addr, str):
                    target = ("[%s]" % addr if ":" in addr and port else addr) + (
                        ":%s" % port if port is not None else "")
                    rule = rule._replace(args=rule.args + (("to", target),))
                else:
                    rule = rule._replace(unknown=rule.unknown + ("%s to a map" % key,))
            elif key in ("masquerade", "redirect") and isinstance(body, dict) and \
                    body.get("port") is not None:
                rule = rule._replace(args=rule.args + (("ports", str(body["port"])),))
    return rule


# ---------------------------------------------------------------- entry point

def looks_like_nft(text):
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] in ("table", "define", "flush", "include") or (
                words[0] in ("add", "insert", "create") and len(words) > 1 and
                words[1] in ("table", "chain", "rule", "set", "map", "element")):
            return True
        if words[0] in ("*", ":") or words[0].startswith(("*", ":", "-", "[")) or \
                words[0] in _IPT_WORDS or words[0] == "sudo":
            return False
    return False


def read(text):
    """(ruleset, Report) for a foreign text; raises ParseError when the text is no ruleset
    at all or is cut short."""
    stripped = text.lstrip()
    try:
        if stripped.startswith("{"):
            ruleset, report = import_nft_json(text)
        elif looks_like_nft(text):
            ruleset, report = import_nft_text(text)
        else:
            ruleset, report = import_iptables(text)
    except RecursionError:
        raise ParseError("nested too deeply")
    if m.is_empty(ruleset):
        report.notes.append(_why_empty(report.as_dict()))
    return ruleset, report


def import_text(text):
    """(ruleset, report as a dict for the module's result)."""
    ruleset, report = read(text)
    return ruleset, report.as_dict()


def _why_empty(report):
    parts = []
    if report["unreadable"]:
        parts.append("%d rule%s the model cannot express (listed above)" % (
            len(report["unreadable"]), "" if len(report["unreadable"]) == 1 else "s"))
    if report["foreign"]:
        parts.append("the rules of %s, left to %s" % (
            ", ".join(report["foreign"]), "it" if len(report["foreign"]) == 1 else "them"))
    if report["out_of_scope"]:
        parts.append("%d rule%s outside the model's chains (%s)" % (
            sum(report["out_of_scope"].values()),
            "" if sum(report["out_of_scope"].values()) == 1 else "s",
            ", ".join(sorted(report["out_of_scope"])[:6])))
    return ("running_config: no entry to migrate; the text holds %s" % "; ".join(parts)
            if parts else "running_config: no entry to migrate; the text holds no NAT or "
                          "forward rule")
