# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""iptables syntax for our rules: render iptables-restore input, parse iptables-save output.

Our rules live in chains of our own (IPMASQ-*), each reached by one jump from its
built-in chain. A chain exists only while it holds rules. Every rule is a line of its own,
so the cost per packet grows with the number of port forwards (nftables uses maps).

A hairpin rule matches the addresses of its forward's interface in the ipset
``ipmasq-hp4-<interface>`` or ``ipmasq-hp6-<interface>`` (``-m set --match-set NAME dst``).
The sets are made and filled by ``ipset restore`` before the rules that use them are
loaded, and destroyed after those rules are gone: ``render_changes`` writes those parts
under their own header lines (see ``split_script``).

A per-rule timeout rule (``-j CT --timeout NAME``, raw table) uses a conntrack timeout
object made with ``nfct add timeout``. iptables-save lists only the first 4 characters of
the name, so our objects have 4-character names made from a hash of their family, protocol
and policy (``object_name``); the rule's comment holds the policy as given (nfct lists
every state), checked against the object when the rule is read. An object is ours while
our rules use it: it is made before the rules that use it, and deleted after the last one
is gone (the kernel refuses to delete an object in use): the NFCT_PARTS of render_changes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import ipaddress
import re
import shlex
from collections import namedtuple

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import rules as r

# our chain -> (table, chain name, built-in chain that jumps to it)
CHAINS = {
    "prerouting": ("nat", "IPMASQ-PREROUTING", "PREROUTING"),
    "postrouting": ("nat", "IPMASQ-POSTROUTING", "POSTROUTING"),
    "forward": ("filter", "IPMASQ-FORWARD", "FORWARD"),
    "helpers": ("raw", "IPMASQ-HELPERS", "PREROUTING"),
    "input": ("filter", "IPMASQ-INPUT", "INPUT"),
    # NPTv6 (ip6tables' SNPT/DNPT live in mangle, ahead of the nat table)
    "npt_in": ("mangle", "IPMASQ-NPT-IN", "PREROUTING"),
    "npt_out": ("mangle", "IPMASQ-NPT-OUT", "POSTROUTING"),
}
TABLES = ("raw", "mangle", "nat", "filter")
FAMILIES = (4, 6)
TOOLS = {4: "iptables-restore", 6: "ip6tables-restore"}
LOOKUPS = False  # no lookup tables: every forward is a rule (see rules.to_rules)
STATELESS_NPT = True  # SNPT/DNPT translate without conntrack: their flows go untracked
_BY_NAME = dict((v[1], k) for k, v in CHAINS.items())
_BUILTIN = dict(((v[0], v[2]), k) for k, v in CHAINS.items())
# ``iptables-save -c`` puts the packet and byte counters in front of each rule
_COUNTERS = re.compile(r"^\[[0-9]+:[0-9]+\]$")
# The built-in chains whose rules a hand-made gateway's NAT setup is read from (parse with
# ``builtins``): its INPUT rules protect the host, which the model says nothing about.
_HAND_MADE = dict((key, chain) for key, chain in _BUILTIN.items()
                  if chain not in ("input", "npt_in", "npt_out"))
# Options that take no value.
_FLAGS = {"--random-fully": "fully-random", "--persistent": "persistent"}

# Chains where admins keep their own forward policy (Docker's DOCKER-USER, ufw's user rules
# behind ufw-before-forward): our FORWARD jump goes after the last jump to one of them, so
# that a DROP there applies to the traffic our rules accept.
FORWARD_ANCHORS = ("DOCKER-USER", "ufw-before-forward", "ufw-user-forward")

# Hairpin address sets (ipset names are at most 31 characters: 11 + 15 fit).
IPSET_PREFIX = "ipmasq-hp"
_IPSET_NAME = re.compile(r"^ipmasq-hp([46])-(.+)\Z")
# how ipset and nfct name the address families
_FAMILY_NAMES = {4: "inet", 6: "inet6"}
_FAMILY_BY_NAME = dict((name, family) for family, name in _FAMILY_NAMES.items())
# The header lines of the ipset parts of render_changes: "ipset" runs before the
# iptables-restore parts, "ipset-after" (destroying sets) after them.
IPSET_PARTS = {"ipset": "# ipset restore", "ipset-after": "# ipset restore, after the rules"}

# Timeout objects (nfct): the header lines of the parts that make them, before the
# iptables-restore parts, and that delete them, after those parts. Each line of a part is
# the arguments of one nfct command.
NFCT_PARTS = {"nfct": "# nfct, before the rules", "nfct-after": "# nfct, after the rules"}
_NFCT_L3PROTO = {"2": 4, "10": 6}
_NFCT_L4PROTO = {"6": "tcp", "17": "udp"}
# The comment of a timeout rule: this, then the policy as given (rules.timeout_text).
TIMEOUT_COMMENT = "ipmasq timeouts "

# chains: {family: {chain: [Rule]}}; jumps: {family: {chain: number of jumps}};
# present: {family: set of our chains that exist}; forward_order: {family: [jump target of
# each rule of the built-in filter FORWARD chain, "" for a rule without one]}; sets:
# {family: {ipset name: frozenset of addresses}}, the hairpin address sets; timeouts:
# {name: (family, protocol, ((state, seconds), ...))}, the conntrack timeout objects: read,
# every object on the host (nfct lists each state of its protocol); wanted, the ones our
# rules use, with the states their entries give
State = namedtuple("State", "chains jumps present forward_order sets timeouts")


def empty_state():
    return State(dict((f, dict((c, []) for c in CHAINS)) for f in FAMILIES),
                 dict((f, dict((c, 0) for c in CHAINS)) for f in FAMILIES),
                 dict((f, set()) for f in FAMILIES),
                 dict((f, []) for f in FAMILIES),
                 dict((f, {}) for f in FAMILIES),
                 {})


def set_name(family, interface):
    return "%s%d-%s" % (IPSET_PREFIX, family, r.check_token("local_if", interface))


def set_interface(name, family=None):
    """The interface a set name carries (see rules.interface_of_set)."""
    return r.interface_of_set(_IPSET_NAME, name, family)


# ---------------------------------------------------------------- render

def _ports(text):
    return text.replace("-", ":")


def _nat_target(addr, port):
    if port is None:
        return addr
    if ":" in addr:  # IPv6: the address or range in brackets, then the ports
        return "[%s]:%s" % (addr, port)
    return "%s:%s" % (addr, port)


def _proto(proto):
    return "ipv6-icmp" if proto == "icmpv6" else proto


def rule_args(rule):
    """One rule as iptables arguments, in the order iptables-save prints them."""
    r.check_rule(rule)
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
    if rule.local_if:
        out += ["-m", "set", "--match-set", set_name(r.rule_family(rule), rule.local_if), "dst"]
    if rule.dport:
        out += ["-m", rule.proto, "--dport", _ports(rule.dport)]
    if rule.local_dst:
        out += ["-m", "addrtype", "--dst-type", "LOCAL"]
    if rule.ct_state or rule.ct_dnat:
        states = [s.upper() for s in rule.ct_state or ()] + (["DNAT"] if rule.ct_dnat else [])
        out += ["-m", "conntrack", "--ctstate", ",".join(states)]
    if rule.ct_count:
        out += ["-m", "connlimit", "--connlimit-above", rule.ct_count, "--connlimit-mask",
                "128" if r.rule_family(rule) == 6 else "32", "--connlimit-saddr"]
    comment = TIMEOUT_COMMENT + r.timeout_text(rule) if rule.verdict == "timeout" \
        else rule.comment
    if comment:
        out += ["-m", "comment", "--comment", r.check_token("comment", comment)]
    flags = [option for option, flag in _FLAGS.items() if flag in (rule.nat_flags or ())]
    if rule.to_addr and "/" in rule.to_addr:
        out += _prefix_target(rule)
    elif rule.verdict == "snat":
        out += ["-j", "SNAT", "--to-source", _nat_target(rule.to_addr, rule.to_port)] + flags
    elif rule.verdict == "masquerade":
        out += ["-j", "MASQUERADE"] + (["--to-ports", rule.to_port] if rule.to_port else []) \
            + flags
    elif rule.verdict == "dnat":
        out += ["-j", "DNAT", "--to-destination", _nat_target(rule.to_addr, rule.to_port)]
    elif rule.verdict == "helper":
        out += ["-j", "CT", "--helper", rule.helper]
    elif rule.verdict == "notrack":
        out += ["-j", "CT", "--notrack"]
    elif rule.verdict == "timeout":
        out += ["-j", "CT", "--timeout", object_name(rule)]
    elif rule.verdict == "reject":
        out += ["-j", "REJECT"]
    else:
        out += ["-j", rule.verdict.upper()]
    return out


def object_name(rule):
    """The 4-character name of the timeout object a timeout rule uses (iptables 1.8.9's
    iptables-save lists only 4 characters of it): base32 of a hash of the rule's family,
    protocol and policy, so that equal policies share one object."""
    digest = hashlib.sha1(("%d %s %s" % (r.rule_family(rule) or 4, rule.proto,
                                         r.timeout_text(rule))).encode()).digest()
    return base64.b32encode(digest).decode()[:4].lower()


def _object(rule):
    """(family, protocol, policy) of the timeout object a timeout rule uses."""
    return r.rule_family(rule) or 4, rule.proto, rule.ct_timeout


def timeout_objects(chains):
    """{name: (family, protocol, policy)} of the timeout objects the timeout rules of
    ``chains`` ({chain: [Rule]}) use; raises RenderError when two policies get one name."""
    out, first = {}, {}
    for rule in chains.get("helpers", ()):
        if rule.verdict != "timeout":
            continue
        name, wanted = object_name(rule), _object(rule)
        if out.setdefault(name, wanted) != wanted:
            raise r.RenderError(
                "the timeouts of source %s (%s) and of source %s (%s) get the same timeout "
                "object name %s (iptables keeps 4 characters of it): change one of those "
                "timeouts by a second" % (first[name].saddr, _policy_text(out[name]),
                                          rule.saddr, _policy_text(wanted), name))
        first.setdefault(name, rule)
    return out


def _policy_text(obj):
    family, proto, policy = obj
    if proto == "other":
        return "timeouts of another protocol or family"
    return "IPv%d %s {%s}" % (family, proto, ", ".join("%s: %s" % pair for pair in policy))


def _used_objects(state):
    """The names of the timeout objects our rules of ``state`` use."""
    return set(object_name(rule) for family in FAMILIES
               for rule in state.chains[family]["helpers"] if rule.verdict == "timeout")


def _fits(obj, wanted):
    """Whether the object ``obj`` sets what ``wanted`` asks (nfct lists every state)."""
    return obj[:2] == wanted[:2] and set(wanted[2]) <= set(obj[2])


def _nfct_changes(have, want):
    """(nfct command lines to run before the rules change, and after): the objects the new
    rules use are made, the ones only the old rules used are deleted."""
    before, used = [], _used_objects(have)
    # what the rules of ``want`` use (a State read from the host lists every object there)
    objects = timeout_objects({"helpers": want.chains[4]["helpers"] + want.chains[6]["helpers"]})
    for name, wanted in sorted(objects.items()):
        obj = have.timeouts.get(name)
        if obj is None:
            family, proto, policy = wanted
            before.append(" ".join(["add", "timeout", name, _FAMILY_NAMES[family], proto] + [
                "%s %d" % pair for pair in r.check_token("ct_timeout", policy)]))
        elif not _fits(obj, wanted) and name in used:
            raise r.RenderError(
                "timeout object %s: our rules use it for %s, and %s gets the same name: "
                "change one of those timeouts by a second" % (
                    name, _policy_text(obj), _policy_text(wanted)))
        elif not _fits(obj, wanted):
            raise r.RenderError(
                "timeout object %s exists and is not ours (no rule of ours uses it): it sets "
                "%s, and our timeouts %s need that name; delete it (nfct delete timeout %s) "
                "or change those timeouts" % (name, _policy_text(obj), _policy_text(wanted),
                                              name))
    after = ["delete timeout %s" % name for name in sorted(used - set(objects))]
    return before, after


def _prefix_target(rule):
    """Address-for-address mapping: SNPT/DNPT in the npt chains, NETMAP in the nat table."""
    if rule.chain in ("npt_in", "npt_out"):
        match = rule.daddr if rule.verdict == "dnat" else rule.saddr
        return ["-j", "DNPT" if rule.verdict == "dnat" else "SNPT", "--src-pfx", match,
                "--dst-pfx", rule.to_addr]
    return ["-j", "NETMAP", "--to", rule.to_addr]


def _line(args):
    """Quote the way iptables-save does (comments never hold double quotes or backslashes)."""
    return " ".join('"%s"' % a if (not a or any(c in a for c in " '\t")) else a for a in args)


def rule_text(rule):
    return _line(rule_args(rule))


def layout(chains, lookups=None, addresses=None):
    """``rules.to_rules(ruleset)`` -> the State we want in the kernel. Every forward is a
    rule of its own: iptables has no lookup tables (``lookups`` must be empty). The hairpin
    sets hold the ``addresses`` ({interface: addresses}) of their interfaces."""
    if any((lookups or {}).values()):
        raise ValueError("iptables keeps no lookup entries: lay out with lookups=False")
    want = empty_state()
    for (family, interface), members in r.address_sets(chains, addresses).items():
        want.sets[family][set_name(family, interface)] = members
    want.timeouts.update(timeout_objects(chains))
    # Rules without addresses go to ip6tables too, but only when there is IPv6 work: an
    # IPv4-only ruleset leaves ip6tables (and iptables-nft's ip6 tables) untouched.
    ipv6 = any(r.rule_family(x) == 6 for rules in chains.values() for x in rules)
    for family in FAMILIES if ipv6 else (4,):
        for chain in CHAINS:
            rules = r.split_by_family(chains.get(chain, ()), family)
            want.chains[family][chain] = rules
            if rules:
                want.present[family].add(chain)
                want.jumps[family][chain] = 1
    return want


def address_sets(state):
    """{ipset name: frozenset of addresses}: the hairpin address sets of a State."""
    return dict((name, members) for family in FAMILIES
                for name, members in state.sets[family].items())


def to_rules(state):
    """A parsed State -> ({chain: [Rule]} with IPv4 and IPv6 merged, no lookup entries)."""
    return dict((c, r.merge_families(state.chains[4][c], state.chains[6][c])) for c in CHAINS), {}


def render_changes(have, want):
    """The iptables-restore --noflush input from ``have`` to ``want``, [] when they match.

    Each family's part starts with a ``# iptables-restore`` or ``# ip6tables-restore``
    line naming the tool that takes it. A chain whose rules differ is declared again
    (which empties it under --noflush) and refilled. The hairpin sets and the timeout
    objects are made (and the sets filled) first, and the ones no rule wants any more are
    destroyed last (IPSET_PARTS, NFCT_PARTS).
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
            position = _jump_position(have, family, chain)
            if position:
                lines += ["-D %s -j %s" % (builtin, name)] * jumps
                lines.append("-I %s %d -j %s" % (builtin, position, name))
        script = []
        for table in TABLES:
            if per_table[table]:
                script += ["*%s" % table] + per_table[table] + ["COMMIT"]
        if script:
            out += ["# %s --noflush" % TOOLS[family]] + script
    before, after = _ipset_changes(have, want)
    made, deleted = _nfct_changes(have, want)
    return ([IPSET_PARTS["ipset"]] + before if before else []) + \
        ([NFCT_PARTS["nfct"]] + made if made else []) + out + \
        ([IPSET_PARTS["ipset-after"]] + after if after else []) + \
        ([NFCT_PARTS["nfct-after"]] + deleted if deleted else [])


def _ipset_changes(have, want):
    """(``ipset restore`` lines to run before the rules change, and after)."""
    before, after = [], []
    for family in FAMILIES:
        old_sets, new_sets = have.sets[family], want.sets[family]
        for name in sorted(new_sets):
            old, new = old_sets.get(name), new_sets[name]
            if old is None:
                before.append("create %s hash:ip family %s" % (name, _FAMILY_NAMES[family]))
                old = frozenset()
            before.extend("del %s %s" % (name, r.check_address(a)) for a in sorted(old - new))
            before.extend("add %s %s" % (name, r.check_address(a)) for a in sorted(new - old))
        after.extend("destroy %s" % name for name in sorted(set(old_sets) - set(new_sets)))
    return before, after


def _jump_position(have, family, chain):
    """Where our jump from the built-in chain must be inserted (1-based), or 0 when the
    one jump there is in place: first in the chain, or in FORWARD right after the last
    jump to a FORWARD_ANCHORS chain."""
    jumps = have.jumps[family][chain]
    if chain != "forward":
        return 0 if jumps == 1 else 1
    name = CHAINS[chain][1]
    order = have.forward_order[family]
    ours = [i for i, target in enumerate(order) if target == name]
    anchors = [i for i, target in enumerate(order) if target in FORWARD_ANCHORS]
    if jumps == 1 and len(ours) == 1 and ours[0] > max(anchors or [-1]):
        return 0
    rest = [target for target in order if target != name]  # our jumps are deleted first
    return 1 + max([i + 1 for i, target in enumerate(rest) if target in FORWARD_ANCHORS] or [0])


def split_script(lines):
    """[lines] from render_changes -> {part: input text}: the part is a family (for
    ``iptables-restore`` or ``ip6tables-restore``), a key of IPSET_PARTS (for
    ``ipset restore``) or of NFCT_PARTS (nfct commands, one a line)."""
    out, part = {}, 4
    headers = dict((header, key) for parts in (IPSET_PARTS, NFCT_PARTS)
                   for key, header in parts.items())
    for line in lines:
        for fam, tool in TOOLS.items():
            if line.startswith("# %s" % tool):
                part = fam
        part = headers.get(line, part)
        out.setdefault(part, []).append(line)
    return dict((f, "\n".join(v) + "\n") for f, v in out.items())


def render_full(state):
    """Restore input that loads our chains on a host that has none of them (boot, persist)."""
    return "\n".join(render_changes(empty_state(), state)) + "\n"


# ---------------------------------------------------------------- parse

class _Unknown(Exception):
    """An option outside the vocabulary of our rules."""


_BRACKETED = re.compile(r"^\[([0-9A-Fa-f:.]+(?:-[0-9A-Fa-f:.]+)?)\](?::([0-9:-]+))?\Z")


def _to_target(value):
    bracketed = _BRACKETED.match(value)
    if bracketed:  # IPv6 with ports: [a]:p, [a-b]:p
        addr, port = bracketed.groups()
        return addr, port.replace(":", "-") if port else None
    if value.startswith("["):
        addr, port = value[1:].split("]:") if "]:" in value else (value[1:-1], None)
    elif value.count(":") == 1:
        addr, port = value.split(":")
    else:
        addr, port = value, None
    return addr, port.replace(":", "-") if port else None


def parse_rule(chain, args, timeouts=None):
    """iptables arguments (after ``-A CHAIN``) -> Rule; raises _Unknown. ``timeouts``: the
    timeout objects (State.timeouts) that ``-j CT --timeout`` may name."""
    f, neg, i, set_family = {"chain": chain}, False, 0, None
    prefix = {}
    while i < len(args):
        opt = args[i]
        val = args[i + 1] if i + 1 < len(args) else None
        i += 2
        if opt == "!":
            neg, i = True, i - 1
            continue
        if opt in _FLAGS or opt == "--connlimit-saddr":
            i -= 1
            if opt in _FLAGS:
                f["nat_flags"] = tuple(x for x in r.NAT_FLAGS
                                       if x in (f.get("nat_flags") or ()) + (_FLAGS[opt],))
            else:
                prefix["saddr"] = True
            neg = False
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
            if val not in ("tcp", "udp", "addrtype", "conntrack", "state", "comment", "set",
                           "connlimit"):
                raise _Unknown(args)
        elif opt == "--connlimit-above":
            f["ct_count"] = val
        elif opt == "--connlimit-mask":
            prefix["mask"] = val
        elif opt == "--to-ports":
            f["to_port"] = val.replace(":", "-")
        elif opt in ("--to", "--src-pfx", "--dst-pfx"):
            prefix[opt] = val
        elif opt == "--match-set":
            flags = args[i] if i < len(args) else None
            i += 1
            match = _IPSET_NAME.match(val or "")
            if flags != "dst" or not match:
                raise _Unknown(args)
            f["local_if"], set_family = set_interface(val), int(match.group(1))
            if f["local_if"] is None:
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
            f["verdict"] = {"CT": "helper", "NETMAP": "prefix", "SNPT": "snat",
                            "DNPT": "dnat"}.get(val, val.lower())
            prefix["target"] = val
            if f["verdict"] not in ("accept", "drop", "reject", "masquerade", "snat", "dnat",
                                    "helper", "prefix"):
                raise _Unknown(args)
        elif opt == "--to-source":
            f["to_addr"], f["to_port"] = _to_target(val)
        elif opt == "--to-destination":
            f["to_addr"], f["to_port"] = _to_target(val)
        elif opt == "--helper":
            f["helper"] = val
        elif opt == "--timeout" and f.get("verdict") == "helper":
            f["verdict"], f["ct_timeout"] = "timeout", val  # the name; see _read_timeout
        elif opt == "--notrack" and f.get("verdict") == "helper":
            f["verdict"] = "notrack"
            i -= 1  # it takes no value
            continue
        elif opt == "--reject-with":
            pass
        elif opt in ("-c", "--set-counters"):
            if not m.digits(val) or not args[i:i + 1] or not m.digits(args[i]):
                raise r.ParseError("%s needs two numbers, packets and bytes" % opt)
            i += 1
        else:
            raise _Unknown(args)
        if val is None:  # a known option at the very end of the line, without its value
            raise r.ParseError("%s has no value: the line is cut short" % opt)
        neg = False
    if "verdict" not in f:
        raise _Unknown(args)
    _read_prefix_target(f, prefix, args)
    if f["verdict"] == "timeout":
        _read_timeout(f, timeouts or {}, args)
    rule = r.normalize(r.Rule(**f))
    if rule.ct_count and (prefix.get("mask") != ("128" if r.rule_family(rule) == 6 else "32")
                          or not prefix.get("saddr")):
        raise _Unknown(args)  # a limit per network, or per destination: not a MAXCON
    if rule.local_if is not None and r.rule_family(rule) != set_family:
        raise _Unknown(args)  # rendered again, it would name the other family's set
    return rule


def _read_prefix_target(f, prefix, args):
    """NETMAP (nat table: snat in postrouting, dnat in prerouting) and SNPT/DNPT (npt
    chains) into ``f``: to_addr is the prefix the addresses are mapped to."""
    target = prefix.get("target")
    if target == "NETMAP":
        f["verdict"] = {"prerouting": "dnat", "postrouting": "snat"}.get(f["chain"])
        f["to_addr"] = prefix.get("--to")
        if not f["verdict"] or not f["to_addr"] or "/" not in f["to_addr"]:
            raise _Unknown(args)
    elif target in ("SNPT", "DNPT"):
        match = f.get("saddr") if target == "SNPT" else f.get("daddr")
        if f["chain"] != ("npt_out" if target == "SNPT" else "npt_in") or not match or \
                r.norm_net(match) != r.norm_net(prefix.get("--src-pfx") or "::/0"):
            raise _Unknown(args)
        f["to_addr"] = r.norm_net(prefix.get("--dst-pfx") or "::/0")


def _read_timeout(f, timeouts, args):
    """A ``-j CT --timeout NAME`` rule of ours: its comment gives the policy, which the
    object NAME must set, for the rule's family and protocol; NAME must be the one that
    policy makes. Anything else is not a rule of ours (_Unknown)."""
    name, comment = f["ct_timeout"], f.pop("comment", None) or ""
    if not comment.startswith(TIMEOUT_COMMENT) or f["chain"] != "helpers":
        raise _Unknown(args)
    policy = tuple((state, int(seconds)) for state, seconds in (
        pair.split("=") for pair in comment[len(TIMEOUT_COMMENT):].split(",")))
    rule = r.normalize(r.Rule(**dict(f, ct_timeout=policy)))
    r.check_rule(rule)
    if rule.proto not in r.TIMEOUT_STATES or \
            [state for state, _seconds in policy] != [
                state for state in r.TIMEOUT_STATES[rule.proto] if state in dict(policy)] or \
            object_name(rule) != name or name not in timeouts or \
            not _fits(timeouts[name], _object(rule)):
        raise _Unknown(args)
    f["ct_timeout"] = policy


def _target(words):
    """The jump target of a rule split into words ("" when it has none)."""
    for i, word in enumerate(words[:-1]):
        if word in ("-j", "--jump", "-g", "--goto"):
            return words[i + 1]
    return ""


def parse_save(text, family, builtins=False, timeouts=None):
    """iptables-save output (or ``iptables -t T -A ...`` lines) -> State for ``family``.
    ``timeouts`` ({name: (family, protocol, policy)}, parse_nfct): the timeout objects on
    the host, which our timeout rules use (one whose object is missing or sets other
    timeouts is not ours); they go into the State.

    Only our chains and the jumps to them are read; other chains' lines are skipped before
    they are split into words, so that nothing a neighbour put in a comment can stop a run.
    With ``builtins`` the NAT/filter rules typed straight into PREROUTING, POSTROUTING and
    FORWARD count as ours too: that is how hand-made gateways are migrated.
    """
    state = empty_state()._replace(timeouts=dict(timeouts or {}))
    chains, jumps, present = state.chains[family], state.jumps[family], state.present[family]
    order = state.forward_order[family]
    table = "filter"
    # iptables-save ends lines with \n only; a comment may hold \r, \x0c or U+2028.
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(" \t\r")
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
        words = [word for word in line.split(" ") if word]
        if words[0].startswith("["):  # iptables-save -c: [packets:bytes] first
            if not _COUNTERS.match(words[0]):
                raise r.ParseError("line %d: packet and byte counters cut short: %s"
                                   % (number, line[:200]))
            words = words[1:]
        if words and words[0] in ("iptables", "ip6tables"):
            table = words[words.index("-t") + 1] if "-t" in words[:3] else "filter"
            words = words[3:] if words[1:2] == ["-t"] else words[1:]
        if len(words) < 2 or words[0] not in ("-A", "--append", "-I", "--insert"):
            raise r.ParseError("line %d: expected '-A CHAIN ...': %s" % (number, line[:200]))
        name = words[1]
        if (table, name) == ("filter", "FORWARD"):
            order.append(_target(words))
        if name not in _BY_NAME and not (
                builtins and (table, name) in _HAND_MADE
                or (table, name) in _BUILTIN and _target(words) in _BY_NAME):
            continue  # a neighbour's rule
        try:
            # most lines hold no quoting at all; str.split is ~40x cheaper than shlex
            # (split on plain spaces only: comments may hold other Unicode spaces)
            args = shlex.split(line) if any(c in line for c in "\"'\\\t") else words
        except ValueError as exc:
            raise r.ParseError("line %d: %s: %s" % (number, exc, line[:200]))
        if args[0].startswith("["):
            args = args[1:]  # the counters, checked above
        if args[0] in ("iptables", "ip6tables"):
            args = args[3:] if args[1:2] == ["-t"] else args[1:]
        rest = args[2:]
        if args[0] in ("-I", "--insert") and rest[:1] and m.digits(rest[0]):
            rest = rest[1:]
        if rest in (["-j", n] for n in _BY_NAME):
            target = _BY_NAME[rest[1]]
            if (table, name) == (CHAINS[target][0], CHAINS[target][2]):
                jumps[target] += 1
                continue
        chain = _BY_NAME.get(name)
        if chain is None and builtins:
            chain = _HAND_MADE.get((table, name))
        if chain is None:
            continue
        try:
            rule = parse_rule(chain, rest, state.timeouts)
        except r.ParseError as exc:
            raise r.ParseError("line %d: %s: %s" % (number, exc, line[:200]))
        except (_Unknown, AttributeError, IndexError, ValueError, TypeError, r.RenderError):
            rule = r.Rule(chain, verdict="unknown", comment=line)
        chains[chain].append(rule)
        if builtins:
            present.add(chain)
    return state


def combine(v4, v6):
    """One State from the IPv4 and the IPv6 parse (the timeout objects are the IPv4
    parse's: both parses are given the same)."""
    return State(*({4: getattr(v4, field)[4], 6: getattr(v6, field)[6]}
                   for field in State._fields if field != "timeouts"), timeouts=v4.timeouts)


_NFCT_OBJECT = re.compile(r"^\.([^ =]+) = \{$")
_NFCT_VALUE = re.compile(r"^\.([A-Za-z0-9_]+) = ([0-9]+),$")


def parse_nfct(text):
    """``nfct list timeout`` output, or our nfct command lines (``add timeout NAME inet udp
    unreplied 10``; what NFCT_PARTS hold) -> {name: (family, protocol, ((state, seconds),
    ...))}. The states are the model's (rules.TIMEOUT_STATES; nfct's others are left out);
    an object of another protocol or family is kept with protocol "other" and no policy:
    its name is taken."""
    out, name, values = {}, None, {}
    for raw in text.split("\n"):
        line = raw.strip()
        words = line.split()
        if words[:2] == ["add", "timeout"] and len(words) >= 5:
            family = _FAMILY_BY_NAME.get(words[3])
            values = dict(zip(words[5::2], words[6::2]))
            out[words[2]] = _nfct_object(family, words[4], values)
            continue
        start = _NFCT_OBJECT.match(raw.rstrip())  # objects start at the line's start
        value = _NFCT_VALUE.match(line)
        if start:
            name, values = start.group(1), {}
        elif value and name:
            values[value.group(1).lower()] = value.group(2)
        elif line == "};" and name:
            out[name] = _nfct_object(_NFCT_L3PROTO.get(values.pop("l3proto", None)),
                                     _NFCT_L4PROTO.get(values.pop("l4proto", None)), values)
            name = None
    return out


def _nfct_object(family, proto, values):
    if family is None or proto not in r.TIMEOUT_STATES:
        return (family, "other", ())
    try:
        return (family, proto, tuple((state, int(values[state])) for state in
                                     r.TIMEOUT_STATES[proto] if state in values))
    except ValueError:
        return (family, "other", ())


def parse_ipset(text):
    """``ipset save`` output (or our ``ipset restore`` input) -> {family: {name: addresses}}
    for our hairpin sets. Other sets are skipped, and so is a set of ours of another type
    than we make (then ``create`` fails and says so, rather than us using it)."""
    out, ours = dict((f, {}) for f in FAMILIES), {}
    for raw in text.split("\n"):
        words = raw.split()
        if len(words) < 3 or words[0] not in ("create", "add") or \
                not words[1].startswith(IPSET_PREFIX):
            continue
        match = _IPSET_NAME.match(words[1])
        if not match or set_interface(words[1]) is None:
            continue
        family = int(match.group(1))
        if words[0] == "create":
            if words[2:5] == ["hash:ip", "family", _FAMILY_NAMES[family]]:
                ours[words[1]] = family
                out[family][words[1]] = frozenset()
        elif words[1] in ours:
            try:
                address = str(ipaddress.ip_address(words[2]))
            except ValueError:
                address = words[2]  # not ours to hold: render_changes refuses to write it back
            out[family][words[1]] = out[family][words[1]] | frozenset([address])
    return out


def parse(text, builtins=False):
    """iptables-save text -> State. ``# ip6tables`` starts the IPv6 part of a combined text,
    ``# ipset`` an ``ipset save`` part and ``# nfct`` timeout objects (what render_full
    writes)."""
    v4, v6, ipset, nfct, current = [], [], [], [], None
    for line in text.split("\n"):
        low = line.strip().lower()
        if low.startswith("# nfct"):
            current = nfct
        elif low.startswith("# ipset"):
            current = ipset
        elif low.startswith("# ip6tables") or low.startswith("ip6tables "):
            current = v6
        elif low.startswith("# iptables") or low.startswith("iptables "):
            current = v4
        (current if current is not None else v4).append(line)
    timeouts = parse_nfct("\n".join(nfct))
    state = combine(parse_save("\n".join(v4), 4, builtins, timeouts),
                    parse_save("\n".join(v6), 6, builtins, timeouts))
    return state._replace(sets=parse_ipset("\n".join(ipset)))
