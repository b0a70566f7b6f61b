# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""iptables syntax for our rules: render iptables-restore input, parse iptables-save output.

Our rules live in chains of our own (IPMASQ-*), each reached by one jump from its
built-in chain. A chain exists only while it holds rules. Every rule is a line of its own,
so the cost per packet grows with the number of port forwards (nftables uses maps).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex
from collections import namedtuple

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import rules as r

# our chain -> (table, chain name, built-in chain that jumps to it)
CHAINS = {
    "prerouting": ("nat", "IPMASQ-PREROUTING", "PREROUTING"),
    "postrouting": ("nat", "IPMASQ-POSTROUTING", "POSTROUTING"),
    "forward": ("filter", "IPMASQ-FORWARD", "FORWARD"),
    "helpers": ("raw", "IPMASQ-HELPERS", "PREROUTING"),
}
TABLES = ("raw", "nat", "filter")
FAMILIES = (4, 6)
TOOLS = {4: "iptables-restore", 6: "ip6tables-restore"}
LOOKUPS = False  # no lookup tables: every forward is a rule (see rules.to_rules)
_BY_NAME = dict((v[1], k) for k, v in CHAINS.items())
_BUILTIN = dict(((v[0], v[2]), k) for k, v in CHAINS.items())
# ``iptables-save -c`` puts the packet and byte counters in front of each rule
_COUNTERS = re.compile(r"^\[[0-9]+:[0-9]+\]$")

# chains: {family: {chain: [Rule]}}; jumps: {family: {chain: number of jumps}};
# present: {family: set of our chains that exist}
State = namedtuple("State", "chains jumps present")


def empty_state():
    return State(dict((f, dict((c, []) for c in CHAINS)) for f in FAMILIES),
                 dict((f, dict((c, 0) for c in CHAINS)) for f in FAMILIES),
                 dict((f, set()) for f in FAMILIES))


# ---------------------------------------------------------------- render

def _ports(text):
    return text.replace("-", ":")


def _nat_target(addr, port):
    if port is None:
        return addr
    return ("[%s]:%s" if ":" in addr else "%s:%s") % (addr, port)


def _proto(proto):
    return "ipv6-icmp" if proto == "icmpv6" else proto


def rule_args(rule):
    """One rule as iptables arguments, in the order iptables-save prints them."""
    if rule.verdict == "unknown":  # kept verbatim from iptables-save: "-A CHAIN ..."
        return shlex.split(rule.comment)[2:]
    out = []
    if rule.saddr:
        out += ["-s", rule.saddr]
    if rule.daddr:
        out += ["-d", rule.daddr]
    if rule.iif:
        out += (["!"] if rule.iif_neg else []) + ["-i", rule.iif]
    if rule.oif:
        out += ["-o", rule.oif]
    if rule.proto:
        out += ["-p", _proto(rule.proto)]
    if rule.dport:
        out += ["-m", rule.proto, "--dport", _ports(rule.dport)]
    if rule.local_dst:
        out += ["-m", "addrtype", "--dst-type", "LOCAL"]
    if rule.ct_state or rule.ct_dnat:
        states = [s.upper() for s in rule.ct_state or ()] + (["DNAT"] if rule.ct_dnat else [])
        out += ["-m", "conntrack", "--ctstate", ",".join(states)]
    if rule.comment:
        out += ["-m", "comment", "--comment", rule.comment]
    if rule.verdict == "snat":
        out += ["-j", "SNAT", "--to-source", rule.to_addr]
    elif rule.verdict == "dnat":
        out += ["-j", "DNAT", "--to-destination", _nat_target(rule.to_addr, rule.to_port)]
    elif rule.verdict == "helper":
        out += ["-j", "CT", "--helper", rule.helper]
    elif rule.verdict == "reject":
        out += ["-j", "REJECT"]
    else:
        out += ["-j", rule.verdict.upper()]
    return out


def _line(args):
    """Quote the way iptables-save does (comments never hold double quotes or backslashes)."""
    return " ".join('"%s"' % a if (not a or any(c in a for c in " '\t")) else a for a in args)


def rule_text(rule):
    return _line(rule_args(rule))


def layout(chains, lookups=None):
    """``rules.to_rules(ruleset)`` -> the State we want in the kernel. Every forward is a
    rule of its own: iptables has no lookup tables (``lookups`` must be empty)."""
    if any((lookups or {}).values()):
        raise ValueError("iptables keeps no lookup entries: lay out with lookups=False")
    want = empty_state()
    for family in FAMILIES:
        for chain in CHAINS:
            rules = r.split_by_family(chains.get(chain, ()), family)
            want.chains[family][chain] = rules
            if rules:
                want.present[family].add(chain)
                want.jumps[family][chain] = 1
    return want


def to_rules(state):
    """A parsed State -> ({chain: [Rule]} with IPv4 and IPv6 merged, no lookup entries)."""
    return dict((c, r.merge_families(state.chains[4][c], state.chains[6][c])) for c in CHAINS), {}


def render_changes(have, want):
    """The iptables-restore --noflush input from ``have`` to ``want``, [] when they match.

    Each family's part starts with a ``# iptables-restore`` or ``# ip6tables-restore``
    line naming the tool that takes it. A chain whose rules differ is declared again
    (which empties it under --noflush) and refilled.
    """
    out = []
    for family in FAMILIES:
        per_table = dict((t, []) for t in TABLES)
        for chain, (table, name, builtin) in CHAINS.items():
            lines = per_table[table]
            rules = want.chains[family][chain]
            exists = chain in have.present[family]
            jumps = have.jumps[family][chain]
            if not rules:
                if exists:
                    lines += ["-D %s -j %s" % (builtin, name)] * jumps
                    lines += ["-F %s" % name, "-X %s" % name]
                continue
            if not exists or have.chains[family][chain] != rules:
                lines.append(":%s - [0:0]" % name)
                lines.extend("-A %s %s" % (name, rule_text(x)) for x in rules)
            if jumps != 1:
                lines += ["-D %s -j %s" % (builtin, name)] * jumps
                lines.append("-I %s 1 -j %s" % (builtin, name))
        script = []
        for table in TABLES:
            if per_table[table]:
                script += ["*%s" % table] + per_table[table] + ["COMMIT"]
        if script:
            out += ["# %s --noflush" % TOOLS[family]] + script
    return out


def split_script(lines):
    """[lines] from render_changes -> {family: restore input text}."""
    out, family = {}, 4
    for line in lines:
        for fam, tool in TOOLS.items():
            if line.startswith("# %s" % tool):
                family = fam
        out.setdefault(family, []).append(line)
    return dict((f, "\n".join(v) + "\n") for f, v in out.items())


def render_full(state):
    """Restore input that loads our chains on a host that has none of them (boot, persist)."""
    return "\n".join(render_changes(empty_state(), state)) + "\n"


# ---------------------------------------------------------------- parse

class _Unknown(Exception):
    """An option outside the vocabulary of our rules."""


def _to_target(value):
    if value.startswith("["):
        addr, port = value[1:].split("]:") if "]:" in value else (value[1:-1], None)
    elif value.count(":") == 1:
        addr, port = value.split(":")
    else:
        addr, port = value, None
    return addr, port.replace(":", "-") if port else None


def parse_rule(chain, args):
    """iptables arguments (after ``-A CHAIN``) -> Rule; raises _Unknown."""
    f, neg, i = {"chain": chain}, False, 0
    while i < len(args):
        opt = args[i]
        val = args[i + 1] if i + 1 < len(args) else None
        i += 2
        if opt == "!":
            neg, i = True, i - 1
            continue
        if neg and opt not in ("-i", "--in-interface"):
            raise _Unknown(args)
        if opt in ("-s", "--source"):
            f["saddr"] = val
        elif opt in ("-d", "--destination"):
            f["daddr"] = val
        elif opt in ("-i", "--in-interface"):
            f["iif"], f["iif_neg"] = val, neg
        elif opt in ("-o", "--out-interface"):
            f["oif"] = val
        elif opt in ("-p", "--protocol"):
            f["proto"] = "icmpv6" if val in ("ipv6-icmp", "icmpv6") else val
        elif opt == "-m":
            if val not in ("tcp", "udp", "addrtype", "conntrack", "state", "comment"):
                raise _Unknown(args)
        elif opt in ("--dport", "--destination-port"):
            f["dport"] = val.replace(":", "-")
        elif opt == "--dst-type" and val == "LOCAL":
            f["local_dst"] = True
        elif opt in ("--ctstate", "--state"):
            states = val.lower().split(",")
            f["ct_dnat"] = "dnat" in states
            f["ct_state"] = tuple(s for s in states if s != "dnat") or None
        elif opt == "--comment":
            f["comment"] = val.replace("\\'", "'")  # iptables-save writes \' inside "..."
        elif opt in ("-j", "--jump"):
            f["verdict"] = {"CT": "helper"}.get(val, val.lower())
            if f["verdict"] not in ("accept", "drop", "reject", "masquerade", "snat", "dnat",
                                    "helper"):
                raise _Unknown(args)
        elif opt == "--to-source":
            f["to_addr"] = val
        elif opt == "--to-destination":
            f["to_addr"], f["to_port"] = _to_target(val)
        elif opt == "--helper":
            f["helper"] = val
        elif opt == "--reject-with":
            pass
        elif opt in ("-c", "--set-counters"):
            if not (val or "").isdigit() or not args[i:i + 1] or not args[i].isdigit():
                raise r.ParseError("%s needs two numbers, packets and bytes" % opt)
            i += 1
        else:
            raise _Unknown(args)
        if val is None:  # a known option at the very end of the line, without its value
            raise r.ParseError("%s has no value: the line is cut short" % opt)
        neg = False
    if "verdict" not in f:
        raise _Unknown(args)
    return r.normalize(r.Rule(**f))


def parse_save(text, family, builtins=False):
    """iptables-save output (or ``iptables -t T -A ...`` lines) -> {chain: [Rule]}, jumps, present.

    With ``builtins`` the NAT/filter rules typed straight into PREROUTING, POSTROUTING and
    FORWARD count as ours too: that is how hand-made gateways are migrated.
    """
    state = empty_state()
    chains, jumps, present = state.chains[family], state.jumps[family], state.present[family]
    table = "filter"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if line.startswith(":"):
            name = line[1:].split()[0]
            if name in _BY_NAME:
                present.add(_BY_NAME[name])
            continue
        try:
            # most lines hold no quoting at all; str.split is ~40x cheaper than shlex
            # (split on plain spaces only: comments may hold other Unicode spaces)
            args = shlex.split(line) if any(c in line for c in "\"'\\\t") \
                else [word for word in line.split(" ") if word]
        except ValueError as exc:
            raise r.ParseError("line %d: %s: %s" % (number, exc, line))
        if args and args[0].startswith("["):
            if not _COUNTERS.match(args[0]):
                raise r.ParseError("line %d: packet and byte counters cut short: %s" % (number, line))
            args = args[1:]
        if args and args[0] in ("iptables", "ip6tables"):
            args, table = args[1:], "filter"
            if args[:1] == ["-t"]:
                table, args = args[1], args[2:]
        if len(args) < 2 or args[0] not in ("-A", "--append", "-I", "--insert"):
            raise r.ParseError("line %d: expected '-A CHAIN ...': %s" % (number, line))
        name, rest = args[1], args[2:]
        if args[0] in ("-I", "--insert") and rest[:1] and rest[0].isdigit():
            rest = rest[1:]
        if rest in (["-j", n] for n in _BY_NAME):
            target = _BY_NAME[rest[1]]
            if (table, name) == (CHAINS[target][0], CHAINS[target][2]):
                jumps[target] += 1
                continue
        chain = _BY_NAME.get(name)
        if chain is None and builtins:
            chain = _BUILTIN.get((table, name))
        if chain is None:
            continue
        try:
            rule = parse_rule(chain, rest)
        except r.ParseError as exc:
            raise r.ParseError("line %d: %s: %s" % (number, exc, line))
        except (_Unknown, AttributeError, IndexError, ValueError):
            rule = r.Rule(chain, verdict="unknown", comment=line)
        chains[chain].append(rule)
        if builtins:
            present.add(chain)
    return state


def combine(v4, v6):
    """One State from the IPv4 and the IPv6 parse."""
    return State({4: v4.chains[4], 6: v6.chains[6]}, {4: v4.jumps[4], 6: v6.jumps[6]},
                 {4: v4.present[4], 6: v6.present[6]})


def parse(text, builtins=False):
    """iptables-save text -> State. ``# ip6tables`` starts the IPv6 part of a combined text."""
    v4, v6, current = [], [], None
    for line in text.splitlines():
        low = line.strip().lower()
        if low.startswith("# ip6tables") or low.startswith("ip6tables "):
            current = v6
        elif low.startswith("# iptables") or low.startswith("iptables "):
            current = v4
        (current if current is not None else v4).append(line)
    return combine(parse_save("\n".join(v4), 4, builtins), parse_save("\n".join(v6), 6, builtins))
