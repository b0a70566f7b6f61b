# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""nftables syntax for our rules: render scripts, parse ``nft -j`` and ``nft list`` output.

Everything lives in ``table inet ipmasq``. Single-port forwards go into the maps
``fwd4``/``fwd6`` (one hash lookup per packet however many there are); forwards with a
port range or an allowed source stay ordinary rules in ``prerouting``. A hairpin rule
matches the addresses of its forward's interface in the set ``hp4_<interface>`` or
``hp6_<interface>`` (see ``rules.address_sets``).

Every rule but the map lookups carries a ``counter``, and the maps count per element (the
``counter`` flag), so that ``nat_status`` can tell how much each rule was used. The parsers
read rules with and without counters alike; the counter values never make two States differ.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import json
import re
import shlex
from collections import namedtuple

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import rules as r

TABLE = "inet ipmasq"
CHAIN_TYPES = {
    "prerouting": "type nat hook prerouting priority dstnat; policy accept;",
    "postrouting": "type nat hook postrouting priority srcnat; policy accept;",
    "forward": "type filter hook forward priority filter; policy accept;",
    "helpers": "type filter hook prerouting priority filter; policy accept;",
    "input": "type filter hook input priority filter; policy accept;",
    # prefix translation first: the first NAT chain that maps a connection decides
    "npt_in": "type nat hook prerouting priority dstnat - 10; policy accept;",
    "npt_out": "type nat hook postrouting priority srcnat - 10; policy accept;",
}
# Chains declared only while they hold rules: a gateway that filters no input keeps the
# table it had before the chain existed.
OPTIONAL_CHAINS = ("input", "npt_in", "npt_out")
LOOKUPS = True  # single-port forwards live in the maps (see rules.to_rules)
MAPS = {
    "fwd4": ("ip", "type ifname . inet_proto . inet_service : ipv4_addr . inet_service;"),
    "fwd6": ("ip6", "type ifname . inet_proto . inet_service : ipv6_addr . inet_service;"),
}
# The rule in prerouting that looks a packet up in a map; a marker in parsed chains.
MAP_RULES = dict((name, r.Rule("prerouting", verdict="map", helper=name)) for name in MAPS)

# present: our table exists; objects: {(kind, name)}; chains: {chain: [Rule]} as in the
# kernel (map lookups as MAP_RULES); elements: {map: {(iif, proto, port): (addr, to_port,
# comment)}}, the lookup entries of rules.to_rules (to_port None: the same port); sets:
# {set: frozenset of addresses}, the hairpin address sets; uncounted: frozenset of the chains
# with a rule (but a map lookup) and the maps without a counter, which render_changes rewrites
# (a rule added by hand, or a table from before counters)
State = namedtuple("State", "present objects chains elements sets uncounted")
State.__new__.__defaults__ = (frozenset(),)
# map <-> address family of its lookup entries
_MAP_FAMILY = {"fwd4": 4, "fwd6": 6}
# hairpin address sets: "hp4_eth0" holds the IPv4 addresses of eth0
SET_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
_SET_NAME = re.compile(r"^hp([46])_(.+)\Z")
# connection limits: the hosts of a source and their connections (``ct count``), a set per
# rule, named after its family and a hash of its source and protocol
_LIMIT_SET = re.compile(r"^cl([46])_[0-9a-f]{12}\Z")
_NAT_FLAGS_IN = ("fully-random", "persistent", "netmap")  # netmap: nft's word for prefix


def limit_set(rule):
    """The set that counts the connections of a connection-limit rule's hosts."""
    digest = hashlib.sha1(("%s %s" % (rule.saddr, rule.proto)).encode()).hexdigest()
    return "cl%d_%s" % (r.rule_family(rule), digest[:12])


def set_name(family, interface):
    return "hp%d_%s" % (family, r.check_token("local_if", interface))


def set_interface(name, family=None):
    """The interface a set name carries (see rules.interface_of_set)."""
    return r.interface_of_set(_SET_NAME, name, family)


# nft spells ICMPv6 the way /etc/protocols does.
_L4PROTO_OUT = {"icmpv6": "ipv6-icmp"}
_L4PROTO_IN = {"ipv6-icmp": "icmpv6"}


class _Unknown(Exception):
    """A statement outside the vocabulary of our rules."""


def empty_state():
    return State(False, frozenset(), dict((c, []) for c in r.CHAINS),
                 dict((n, {}) for n in MAPS), {})


# ---------------------------------------------------------------- layout

def layout(chains, lookups, addresses=None):
    """``rules.to_rules(ruleset, lookups=True)`` -> the State we want in the kernel: the
    lookup entries are the map elements, looked up after the other prerouting rules; the
    hairpin sets hold the ``addresses`` ({interface: addresses}) of their interfaces."""
    out = dict((c, list(chains.get(c, ()))) for c in r.CHAINS)
    out["prerouting"].extend(MAP_RULES[n] for n in sorted(MAPS))
    elements = dict((n, lookups.get(family, {})) for n, family in _MAP_FAMILY.items())
    sets = dict((set_name(family, interface), members) for (family, interface), members
                in r.address_sets(chains, addresses).items())
    objects = set(("chain", c) for c in r.CHAINS if out[c] or c not in OPTIONAL_CHAINS)
    objects |= set(("map", n) for n in MAPS)
    objects |= set(("ct helper", _helper_name(h)) for h in out["helpers"] if h.helper)
    objects |= set(("ct timeout", r.timeout_name(x)) for x in out["helpers"] if x.ct_timeout)
    objects |= set(("set", limit_set(x)) for x in out["forward"] if x.ct_count)
    objects |= set(("set", n) for n in sets)
    return State(True, frozenset(objects), out, elements, sets)


def address_sets(state):
    """{set name: frozenset of addresses}: the hairpin address sets of a State."""
    return dict(state.sets)


def to_rules(state):
    """A parsed State -> ({chain: [Rule]}, lookup entries), as rules.from_rules reads them."""
    chains = dict((c, [x for x in state.chains.get(c, ()) if x.verdict != "map"])
                  for c in r.CHAINS)
    return chains, dict((family, state.elements.get(n, {})) for n, family in _MAP_FAMILY.items())


# ---------------------------------------------------------------- render

def _helper_name(rule):
    return "%s-%s-%s" % (rule.helper, rule.proto, rule.dport)


def _helper_of(name):
    """Inverse of _helper_name; helper names may contain '-' themselves (netbios-ns)."""
    return name.rsplit("-", 2)[0]


def _helper_decl(name, table=""):
    """The ct helper object ``name``, inside a table block or (``table``) on its own."""
    helper, proto = name.rsplit("-", 2)[:2]
    return 'ct helper %s%s { type "%s" protocol %s; l3proto inet; }' % (
        table and table + " ", name, helper, proto)


def _q(text):
    return '"%s"' % text


def _ifname(name):
    """An interface as nft matches it: a pattern "ppp+" is "ppp*" there."""
    return _q(name[:-1] + "*" if name.endswith("+") else name)


def _ifname_in(name):
    """The interface of a rule read from nft: "ppp*" is our pattern "ppp+"."""
    return name[:-1] + "+" if isinstance(name, str) and name.endswith("*") else name


def _addr(family_kw, field, value):
    """nft prints a host route as the bare address."""
    host = "/128" if family_kw == "ip6" else "/32"
    return "%s %s %s" % (family_kw, field, value[:-len(host)] if value.endswith(host) else value)


def _nat_target(addr, port):
    if port is None:
        return addr
    if ":" in addr:  # IPv6: each end of a range in brackets, then the ports
        return "%s:%s" % ("-".join("[%s]" % a for a in addr.split("-")), port)
    return "%s:%s" % (addr, port)


def _nat_statement(rule, fam):
    """The NAT verdict of a rule: a prefix (NETMAP) when to_addr has a length."""
    flags = " %s" % ",".join(rule.nat_flags) if rule.nat_flags else ""
    if rule.verdict == "masquerade":
        return "masquerade%s%s" % (" to :%s" % rule.to_port if rule.to_port else "", flags)
    if "/" in rule.to_addr:
        return "%s %s prefix to %s" % (rule.verdict, fam, rule.to_addr)
    return "%s %s to %s%s" % (rule.verdict, fam, _nat_target(rule.to_addr, rule.to_port), flags)


def _timeout_decl(rule, table=""):
    """The ct timeout object a timeout rule uses; its comment holds the policy as given
    (nft lists a policy without the states at their default values)."""
    text = r.timeout_text(rule)
    return 'ct timeout %s%s { protocol %s; l3proto %s; policy = { %s }; comment "%s"; }' % (
        table and table + " ", r.timeout_name(rule), rule.proto,
        "ip6" if r.rule_family(rule) == 6 else "ip",
        ", ".join("%s: %d" % pair for pair in rule.ct_timeout), text)


def rule_text(rule):
    """One rule as nft statements, spelled the way ``nft list`` prints it."""
    r.check_rule(rule)
    if rule.verdict == "unknown":
        return "# not understood: %s" % rule.comment
    if rule.verdict == "map":
        fam = MAPS[rule.helper][0]
        return "dnat %s to iifname . meta l4proto . th dport map @%s" % (fam, rule.helper)
    fam = "ip6" if r.rule_family(rule) == 6 else "ip"
    out = []
    if rule.iif:
        out.append("iifname %s%s" % ("!= " if rule.iif_neg else "", _ifname(rule.iif)))
    if rule.saddr:
        out.append(_addr(fam, "saddr", rule.saddr))
    if rule.daddr:
        out.append(_addr(fam, "daddr", rule.daddr))
    if rule.local_if:
        out.append("%s daddr @%s" % (fam, set_name(4 if fam == "ip" else 6, rule.local_if)))
    if rule.oif:
        out.append("oifname %s" % _ifname(rule.oif))
    if rule.local_dst:
        out.append("fib daddr type local")
    if rule.proto and rule.dport:
        out.append("%s dport %s" % (rule.proto, rule.dport))
    elif rule.proto:
        out.append("meta l4proto %s" % _L4PROTO_OUT.get(rule.proto, rule.proto))
    if rule.ct_state:
        out.append("ct state %s" % ",".join(rule.ct_state))
    if rule.ct_dnat:
        out.append("ct status dnat")
    if rule.ct_count:
        out.append("add @%s { %s saddr ct count over %s }" % (limit_set(rule), fam, rule.ct_count))
    out.append("counter")
    if rule.verdict in ("snat", "dnat", "masquerade"):
        out.append(_nat_statement(rule, fam))
    elif rule.verdict == "helper":
        out.append("ct helper set %s" % _q(_helper_name(rule)))
    elif rule.verdict == "timeout":
        out.append("ct timeout set %s" % _q(r.timeout_name(rule)))
    else:
        out.append(rule.verdict)
    if rule.comment:
        out.append("comment %s" % _q(rule.comment))
    return " ".join(out)


def _element_text(key, value):
    (iif, proto, port), (addr, to_port, comment) = key, value
    for field, token in (("iif", iif), ("proto", proto), ("dport", port), ("to_addr", addr),
                         ("to_port", to_port), ("comment", comment)):
        r.check_token(field, token)
    note = " comment %s" % _q(comment) if comment else ""
    return "%s . %s . %s%s : %s . %s" % (_q(iif), proto, port, note, addr, to_port or port)


def _element(port, addr, to_port, comment):
    """A map element's value as the State holds it (the same port as None)."""
    return (addr, None if to_port == port else to_port, comment)


def _set_decl(name):
    limit = _LIMIT_SET.match(name)
    if limit:  # its elements are the hosts the kernel counts: never written by us
        return "type %s; size 65535; flags dynamic;" % SET_TYPES[int(limit.group(1))]
    return "type %s;" % SET_TYPES[int(_SET_NAME.match(name).group(1))]


def _timeout_rules(state):
    return dict((r.timeout_name(x), x) for x in state.chains.get("helpers", ()) if x.ct_timeout)


def _set_members(addresses):
    return ", ".join(r.check_address(a) for a in sorted(addresses))


def _object_decl(kind, name, state):
    if kind == "chain":
        return "add chain %s %s { %s }" % (TABLE, name, CHAIN_TYPES[name])
    if kind == "map":
        return "add map %s %s { %s counter; }" % (TABLE, name, MAPS[name][1])
    if kind == "set":
        return "add set %s %s { %s }" % (TABLE, name, _set_decl(name))
    if kind == "ct timeout":
        return "add " + _timeout_decl(_timeout_rules(state)[name], TABLE)
    return "add " + _helper_decl(name, TABLE)


def render_full(state):
    """The whole table as one idempotent script: valid on any host state (boot, persist)."""
    lines = ["table %s {}" % TABLE, "delete table %s" % TABLE]
    if not has_rules(state):
        return "\n".join(lines) + "\n"
    lines.append("table %s {" % TABLE)
    timeouts = _timeout_rules(state)
    for kind, name in sorted(state.objects):
        if kind == "ct helper":
            lines.append("\t" + _helper_decl(name))
        elif kind == "ct timeout":
            lines.append("\t" + _timeout_decl(timeouts[name]))
        elif kind == "set" and _LIMIT_SET.match(name):
            lines.extend(["\tset %s {" % name, "\t\t%s" % _set_decl(name), "\t}"])
    for name in sorted(MAPS):
        elems = sorted(state.elements[name].items())
        lines.append("\tmap %s {" % name)
        lines.append("\t\t%s" % MAPS[name][1])
        lines.append("\t\tcounter")
        if elems:
            lines.append("\t\telements = { %s }" % ",\n\t\t\t".join(
                _element_text(k, v) for k, v in elems))
        lines.append("\t}")
    for name in sorted(state.sets):
        lines.append("\tset %s {" % name)
        lines.append("\t\t%s" % _set_decl(name))
        if state.sets[name]:
            lines.append("\t\telements = { %s }" % _set_members(state.sets[name]))
        lines.append("\t}")
    for chain in r.CHAINS:
        if ("chain", chain) not in state.objects:
            continue
        lines.append("\tchain %s {" % chain)
        lines.append("\t\t%s" % CHAIN_TYPES[chain])
        lines.extend("\t\t%s" % rule_text(x) for x in state.chains[chain])
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def has_rules(state):
    """True when the State holds any rule or map element (map lookups alone do not count)."""
    return any(x.verdict != "map" for c in state.chains.values() for x in c) \
        or any(state.elements.values())


def render_changes(have, want):
    """The commands that turn State ``have`` into State ``want``: [] when they match.

    A chain whose rules differ is flushed and refilled (chains hold few rules: the many
    forwards live in maps, which change element by element).
    """
    if not has_rules(want):
        return ["delete table %s" % TABLE] if have.present else []
    if have.present and have.uncounted & set(MAPS):
        # A map cannot gain the counter flag: a table from before counters is replaced
        # whole, in the same transaction.
        return ["delete table %s" % TABLE] + render_changes(empty_state(), want)
    cmds = []
    if not have.present:
        cmds.append("add table %s" % TABLE)
    cmds.extend(_object_decl(k, n, want) for k, n in sorted(want.objects - have.objects)
                if k in ("chain", "map", "set"))
    cmds.extend(_object_decl(k, n, want) for k, n in sorted(want.objects - have.objects)
                if k in ("ct helper", "ct timeout"))
    for name in sorted(MAPS):
        old, new = have.elements.get(name, {}), want.elements[name]
        # sort only what differs: the maps may hold 100,000 elements
        gone = sorted(k for k, v in old.items() if v != new.get(k))
        if gone:
            cmds.append("delete element %s %s { %s }" % (TABLE, name, ", ".join(
                "%s . %s . %s" % (_q(r.check_token("iif", k[0])), r.check_token("proto", k[1]),
                                  r.check_token("dport", k[2])) for k in gone)))
        added = sorted(k for k, v in new.items() if old.get(k) != v)
        if added:
            cmds.append("add element %s %s { %s }" % (TABLE, name, ", ".join(
                _element_text(k, new[k]) for k in added)))
    for name in sorted(want.sets):
        old, new = have.sets.get(name, frozenset()), want.sets[name]
        if old - new:
            cmds.append("delete element %s %s { %s }" % (TABLE, name, _set_members(old - new)))
        if new - old:
            cmds.append("add element %s %s { %s }" % (TABLE, name, _set_members(new - old)))
    for chain in r.CHAINS:
        if have.chains.get(chain, []) != want.chains[chain] or chain in have.uncounted or \
                ("chain", chain) not in have.objects:
            if ("chain", chain) in have.objects:
                cmds.append("flush chain %s %s" % (TABLE, chain))
            cmds.extend("add rule %s %s %s" % (TABLE, chain, rule_text(x))
                        for x in want.chains[chain])
    # after the rules that used them are gone (our optional chains: flushed above)
    cmds.extend("delete %s %s %s" % (k, TABLE, _object_name(n))
                for k, n in sorted(have.objects - want.objects)
                if k in ("ct helper", "ct timeout", "set")
                or k == "chain" and n in OPTIONAL_CHAINS)
    return cmds


_OBJECT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}\Z")


def _object_name(name):
    """A name read from the host, as it may appear in a command."""
    if not isinstance(name, str) or not _OBJECT_NAME.match(name):
        raise r.RenderError("refusing to render object name %s" % model.echo(name))
    return name


# ---------------------------------------------------------------- parse: nft -j

def _json_value(value):
    if isinstance(value, dict) and "prefix" in value:
        return "%s/%s" % (value["prefix"]["addr"], value["prefix"]["len"])
    if isinstance(value, dict) and "range" in value:
        return "%s-%s" % tuple(value["range"])
    if isinstance(value, dict) and "set" in value:
        return [_json_value(v) for v in value["set"]]
    return value


def _json_rule(chain, expr, comment):
    f = {"chain": chain, "comment": comment}
    for stmt in expr:
        (key, body), = stmt.items()
        if key == "match":
            left, right, neg = body["left"], _json_value(body["right"]), body["op"] == "!="
            if "meta" in left and left["meta"]["key"] in ("iifname", "oifname"):
                name = "iif" if left["meta"]["key"] == "iifname" else "oif"
                if neg and name == "oif":
                    raise _Unknown(stmt)
                f[name], f["iif_neg"] = _ifname_in(right), neg or f.get("iif_neg", False)
            elif "meta" in left and left["meta"]["key"] == "l4proto" and not neg:
                f["proto"] = _L4PROTO_IN.get(right, right)
            elif "payload" in left and left["payload"]["field"] in ("saddr", "daddr") and not neg:
                _address_match(f, left["payload"]["protocol"], left["payload"]["field"], right)
            elif "payload" in left and left["payload"]["field"] == "dport" and not neg:
                if left["payload"]["protocol"] in ("tcp", "udp"):
                    f["proto"] = left["payload"]["protocol"]
                f["dport"] = str(right)
            elif "ct" in left and left["ct"]["key"] == "state" and not neg:
                f["ct_state"] = tuple(right if isinstance(right, list) else [right])
            elif "ct" in left and left["ct"]["key"] == "status" and right == "dnat" and not neg:
                f["ct_dnat"] = True
            elif "fib" in left and right == "local" and not neg:
                f["local_dst"] = True
            else:
                raise _Unknown(stmt)
        elif key in ("accept", "drop", "reject"):
            f["verdict"] = key
        elif key in ("snat", "dnat", "masquerade"):
            body = body or {}
            addr = body.get("addr")
            if isinstance(addr, dict) and "map" in addr:
                f["verdict"], f["helper"] = "map", addr["map"]["data"].lstrip("@")
                continue
            f["verdict"] = key
            if key != "masquerade":
                f["to_addr"] = _json_value(addr)
                if "netmap" in str(body.get("flags")):
                    f["to_addr"] = _prefix(f["to_addr"])
            if body.get("port") is not None:
                f["to_port"] = str(_json_value(body["port"]))
            _nat_flags(f, body.get("flags"))
        elif key == "ct helper":
            f["verdict"], f["helper"] = "helper", _helper_of(body)
        elif key == "ct timeout":
            f["verdict"], f["ct_timeout"] = "timeout", body
        elif key == "set" and body.get("op") == "add" and body.get("stmt"):
            (counter,), elem = body["stmt"], body["elem"]
            if not ("ct count" in counter and counter["ct count"].get("inv") and
                    elem.get("payload", {}).get("field") == "saddr"):
                raise _Unknown(stmt)
            f["ct_count"], f["_limit_set"] = str(counter["ct count"]["val"]), body["set"]
        elif key != "counter":
            raise _Unknown(stmt)
    return _finish(f, expr)


def _address_match(f, protocol, field, value):
    """``ip daddr 10.0.0.0/8`` or, for a hairpin rule, ``ip daddr @hp4_eth0`` into ``f``."""
    if isinstance(value, str) and value.startswith("@"):
        family = {"ip": 4, "ip6": 6}.get(protocol)
        interface = set_interface(value[1:], family)
        if field != "daddr" or interface is None:
            raise _Unknown(value)
        f["local_if"], f["_set_family"] = interface, family
    else:
        f[field] = value


def _nat_flags(f, flags):
    """NAT flags as nft gives them (a word, a list, or comma-separated) into ``f``."""
    if isinstance(flags, str):
        flags = flags.split(",")
    flags = set(flags or ())
    if flags - set(_NAT_FLAGS_IN):
        raise _Unknown(flags)  # "random" and the like: not what the model writes
    f["nat_flags"] = tuple(x for x in r.NAT_FLAGS if x in flags) or None


def _finish(f, source):
    """The Rule that the fields read from ``source`` make; raises _Unknown."""
    set_family = f.pop("_set_family", None)
    counted_in = f.pop("_limit_set", None)
    if "verdict" not in f:
        raise _Unknown(source)
    rule = r.normalize(r.Rule(**f))
    if counted_in is not None and (not rule.saddr or counted_in.lstrip("@") != limit_set(rule)):
        raise _Unknown(source)  # another set: rendered again, this rule would name ours
    if set_family is not None and r.rule_family(rule) != set_family:
        raise _Unknown(source)  # rendered again, it would name the other family's set
    return rule


def _set_elements(values):
    """Set elements as nft prints them (JSON values or words) -> frozenset of addresses."""
    out = set()
    for value in values or ():
        if isinstance(value, dict) and "elem" in value:
            value = value["elem"].get("val")
        value = _json_value(value)
        try:
            out.add(str(ipaddress.ip_address(value)))
        except ValueError:
            out.add(str(value))  # not ours to hold: render_changes refuses to write it back
    return frozenset(out)


def _json_elements(elems):
    out = {}
    for key, value in elems or ():
        comment = None
        if "elem" in key:
            comment, key = key["elem"].get("comment"), key["elem"]["val"]
        iif, proto, port = key["concat"]
        addr, to_port = value["concat"]
        out[(iif, proto, str(port))] = _element(str(port), addr, str(to_port), comment)
    return out


def parse_json(text):
    """``nft -j list table inet ipmasq`` (or ``list ruleset``) output -> State."""
    try:
        items = json.loads(text)["nftables"]
    except RecursionError:
        raise r.ParseError("not nft -j output: nested too deeply")
    except (ValueError, KeyError, TypeError) as exc:
        raise r.ParseError("not nft -j output: %s" % str(exc)[:200])
    state, objects, uncounted, timeouts = empty_state(), set(), set(), {}
    for item in items:
        (kind, body), = item.items()
        if kind == "metainfo" or body.get("family") != "inet" or \
                body.get("table", body.get("name")) != "ipmasq":
            continue
        if kind == "table":
            state = state._replace(present=True)
        elif kind in ("chain", "map", "ct helper", "set", "ct timeout"):
            objects.add((kind, body["name"]))
            if kind == "map" and body["name"] in MAPS:
                state.elements[body["name"]] = _json_elements(body.get("elem"))
                if not any("counter" in x for x in body.get("stmt") or ()):
                    uncounted.add(body["name"])
            if kind == "set" and not _LIMIT_SET.match(body["name"]):
                state.sets[body["name"]] = _set_elements(body.get("elem"))
            if kind == "ct timeout":
                timeouts[body["name"]] = (body.get("protocol"), body.get("l3proto"),
                                          body.get("comment"))
        elif kind == "rule":
            try:
                rule = _json_rule(body["chain"], body["expr"], body.get("comment"))
            except (_Unknown, AttributeError, KeyError, TypeError, ValueError):
                rule = r.Rule(body["chain"], verdict="unknown", comment=json.dumps(body["expr"]))
            state.chains.setdefault(body["chain"], []).append(rule)
            if rule.verdict not in ("map", "unknown") and \
                    not any("counter" in x for x in body["expr"]):
                uncounted.add(body["chain"])
    _resolve_timeouts(state, timeouts)
    return state._replace(objects=frozenset(objects), uncounted=frozenset(uncounted))


def _resolve_timeouts(state, timeouts):
    """Give each ``ct timeout set`` rule the policy of its object ({name: (protocol,
    l3proto, comment)}): the comment holds it, the name must be the one it makes."""
    rules = state.chains.get("helpers", [])
    for index, rule in enumerate(rules):
        if rule.verdict != "timeout":
            continue
        proto, l3proto, text = timeouts.get(rule.ct_timeout, (None, None, None))
        try:
            policy = tuple((state_, int(seconds)) for state_, seconds in
                           (pair.split("=") for pair in (text or "").split(",")))
            read = rule._replace(ct_timeout=policy)
            r.check_rule(read)
            if (r.timeout_name(read), proto, l3proto) != (
                    rule.ct_timeout, rule.proto, "ip6" if r.rule_family(rule) == 6 else "ip"):
                raise ValueError(rule.ct_timeout)
        except (ValueError, TypeError, r.RenderError):
            read = r.Rule("helpers", verdict="unknown",
                          comment="%s (ct timeout object %s)" % (
                              rule_text(rule._replace(ct_timeout=None, verdict="accept")),
                              rule.ct_timeout))
        rules[index] = read


# ---------------------------------------------------------------- parse: nft list (text)

def _text_rule(chain, tokens):
    f, i = {"chain": chain}, 0

    def take(n=1):
        nonlocal_i[0] += n
        return tokens[nonlocal_i[0] - n:nonlocal_i[0]]

    nonlocal_i = [0]
    while nonlocal_i[0] < len(tokens):
        tok = take()[0]
        if tok in ("iifname", "oifname"):
            value = take()[0]
            neg = value == "!="
            if neg:
                value = take()[0]
            f["iif" if tok == "iifname" else "oif"] = _ifname_in(value)
            if neg:
                f["iif_neg"] = True
        elif tok in ("ip", "ip6"):
            field, value = take(2)
            if field not in ("saddr", "daddr"):
                raise _Unknown(tokens)
            _address_match(f, tok, field, value)
        elif tok == "fib":
            if take(3) != ["daddr", "type", "local"]:
                raise _Unknown(tokens)
            f["local_dst"] = True
        elif tok == "meta":
            key, value = take(2)
            if key != "l4proto":
                raise _Unknown(tokens)
            f["proto"] = _L4PROTO_IN.get(value, value)
        elif tok in ("tcp", "udp", "th"):
            key, value = take(2)
            if key != "dport":
                raise _Unknown(tokens)
            if tok != "th":
                f["proto"] = tok
            f["dport"] = value
        elif tok == "ct":
            key = take()[0]
            if key == "state":
                f["ct_state"] = tuple(take()[0].split(","))
            elif key == "status" and take()[0] == "dnat":
                f["ct_dnat"] = True
            elif key == "helper" and take()[0] == "set":
                f["verdict"], f["helper"] = "helper", _helper_of(take()[0])
            elif key == "timeout" and take()[0] == "set":
                f["verdict"], f["ct_timeout"] = "timeout", take()[0]
            else:
                raise _Unknown(tokens)
        elif tok in ("accept", "drop"):
            f["verdict"] = tok
        elif tok == "reject":
            f["verdict"] = tok
            if tokens[nonlocal_i[0]:nonlocal_i[0] + 1] == ["with"]:
                take(3)
        elif tok == "masquerade":
            f["verdict"] = tok
            if tokens[nonlocal_i[0]:nonlocal_i[0] + 1] == ["to"]:
                f["to_port"] = take(2)[1].lstrip(":")
            _text_flags(f, tokens, take, nonlocal_i)
        elif tok in ("snat", "dnat"):
            fam, to = take(2)
            prefix = to == "prefix"
            if prefix:
                to = take()[0]
            target = take()[0]
            if target == "iifname":
                f["verdict"], f["helper"] = "map", tokens[-1].lstrip("@")
                break
            f["verdict"] = tok
            f["to_addr"], f["to_port"] = _split_target(fam, target)
            if prefix:
                f["to_addr"] = _prefix(f["to_addr"])
            _text_flags(f, tokens, take, nonlocal_i)
        elif tok == "add" and tokens[nonlocal_i[0] + 1:nonlocal_i[0] + 2] == ["{"]:
            name, _brace, fam, field, ct, count, over, value, close = take(9)
            if (field, ct, count, over, close) != ("saddr", "ct", "count", "over", "}"):
                raise _Unknown(tokens)
            f["ct_count"], f["_limit_set"] = value, name
        elif tok == "counter":
            if tokens[nonlocal_i[0]:nonlocal_i[0] + 1] == ["packets"]:
                take(4)
        elif tok == "comment":
            f["comment"] = take()[0]
        else:
            raise _Unknown(tokens)
    return _finish(f, tokens)


_TARGET = re.compile(r"^\[?([0-9A-Fa-f.:]+?)\]?(?:-\[?([0-9A-Fa-f.:]+?)\]?)?(?::([0-9-]+))?\Z")


def _prefix(address):
    """A prefix NAT target: newer nft prints a whole-address prefix as the bare address."""
    if "/" in address:
        return address
    return address + ("/128" if ":" in address else "/32")


def _split_target(fam, target):
    """A NAT target as nft prints it -> (address or range or prefix, ports or None)."""
    if "/" in target:
        return target, None
    if fam == "ip6" and "[" not in target:
        return target, None  # an IPv6 address or range without ports
    match = _TARGET.match(target)
    if not match:
        raise _Unknown(target)
    lo, hi, ports = match.groups()
    return (lo + "-" + hi if hi else lo), ports


def _text_flags(f, tokens, take, position):
    """The NAT flags word after a NAT statement ("fully-random,persistent"), if any."""
    word = tokens[position[0]] if position[0] < len(tokens) else ""
    if word and set(word.split(",")) <= set(_NAT_FLAGS_IN + ("random",)):
        _nat_flags(f, take()[0])


# A word: runs of non-space characters and "double-quoted strings" (which may hold spaces).
_WORD = re.compile(r'(?:"[^"]*"|[^ \t\r\n"])+')  # shlex's whitespace only


def _split(text):
    """shlex.split for nft's output: without backslashes or single quotes, only double
    quotes group words, and a regular expression is ~30x cheaper (100,000 map elements)."""
    if "\\" in text or "'" in text or text.count('"') % 2:
        return shlex.split(text)  # (an unclosed quote: shlex raises its ValueError)
    return [w.replace('"', "") for w in _WORD.findall(text)]


def _text_elements(text):
    """``"eth0" . tcp . 8080 comment "web" : 192.168.10.5 . 80, ...`` -> elements."""
    toks, out, i = _split(text), {}, 0
    while i < len(toks):
        if len(toks) - i < 9:  # a whole element is at least 9 words
            raise r.ParseError("cannot read map element from %r: cut short" % " ".join(toks[i:]))
        iif, proto, port = toks[i], toks[i + 2], toks[i + 4]
        i += 5
        if toks[i] == "counter":  # per element, in a map with the counter flag
            i += 5 if toks[i + 1:i + 2] == ["packets"] else 1
        comment = None
        if toks[i] == "comment":
            comment, i = toks[i + 1], i + 2
        if toks[i] != ":":
            raise r.ParseError("cannot read map element near %r" % " ".join(toks[i - 5:i + 1]))
        # only the last token of an element carries the separating comma
        out[(iif, proto, port)] = _element(port, toks[i + 1], toks[i + 3].rstrip(","), comment)
        i += 4
    return out


_QUOTE_OR_BRACE = re.compile(r'["}]')


def _close_brace(text, quoted=False):
    """(index of the first '}' outside double quotes or -1, whether ``text`` ends inside
    quotes); ``quoted``: whether it starts inside them (a comment spanning lines)."""
    for match in _QUOTE_OR_BRACE.finditer(text):
        if match.group() == '"':
            quoted = not quoted
        elif not quoted:
            return match.start(), quoted
    return -1, quoted


def _block_elements(state, block, text):
    """The ``elements = { ... }`` text of map or set ``block`` into ``state``."""
    if _LIMIT_SET.match(block or ""):
        return  # the hosts the kernel counts for a connection limit
    if block in state.sets:
        state.sets[block] = _set_elements(w.rstrip(",") for w in text.split())
    else:
        state.elements[block] = _text_elements(text)


def parse_text(text):
    """``nft list table inet ipmasq`` output, or a script we rendered -> State."""
    state, objects, uncounted, timeouts = empty_state(), set(), set(), {}
    counted_maps = set()
    chain = block = None
    pending, quoted = None, False  # the lines of an element list not closed yet
    in_table = False
    timeout_block = None  # [name, text] of a ct timeout object being read
    for raw in text.splitlines():
        line = raw.strip()
        if timeout_block is not None:
            timeout_block[1] += " " + line
            if line == "}":
                timeouts[timeout_block[0]] = _timeout_fields(timeout_block[1])
                timeout_block = None
            continue
        if pending is not None:
            # scan only the new line: rescanning all of pending would be quadratic
            end, quoted = _close_brace(line, quoted)
            pending.append(line if end < 0 else line[:end])
            if end >= 0:
                _block_elements(state, block, " ".join(pending))
                pending = None
            continue
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[1:3] == ["inet", "ipmasq"] and words[0] == "table" \
                and line not in ("table inet ipmasq {", "table inet ipmasq {}"):
            raise r.ParseError("cannot read %r: expected 'table inet ipmasq {' on a line of "
                               "its own, as nft list prints it" % line)
        if line == "table inet ipmasq {":
            in_table, state = True, state._replace(present=True)
        elif line.startswith("table ") and line.endswith("{"):
            in_table = False
        elif not in_table or line.startswith(("table ", "delete ")):
            continue
        elif words[0] in ("chain", "map", "set") and line.endswith("{"):
            chain, block = (words[1], None) if words[0] == "chain" else (None, words[1])
            objects.add((words[0], words[1]))
            if words[0] == "set" and not _LIMIT_SET.match(words[1]):
                state.sets[words[1]] = frozenset()
        elif line.startswith("ct timeout "):
            objects.add(("ct timeout", words[2]))
            chain = block = None
            if line.endswith("}"):  # on one line, as render_full writes it
                timeouts[words[2]] = _timeout_fields(line)
            else:
                timeout_block = [words[2], line]
        elif line.startswith("ct helper "):
            objects.add(("ct helper", words[2]))
            chain = block = None
        elif line == "}":
            chain = block = None
        elif block and line.rstrip(";") == "counter":
            counted_maps.add(block)
        elif block and line.startswith("elements = {"):
            rest = line[line.index("{") + 1:]
            end, quoted = _close_brace(rest)
            if end >= 0:
                _block_elements(state, block, rest[:end])
            else:
                pending = [rest]
        elif chain and not line.startswith("type "):
            try:
                words = shlex.split(line)
                rule = _text_rule(chain, words)
            except (_Unknown, ValueError, TypeError):
                rule = r.Rule(chain, verdict="unknown", comment=line)
            state.chains.setdefault(chain, []).append(rule)
            if rule.verdict not in ("map", "unknown") and not _has_counter(words):
                uncounted.add(chain)
    if pending is not None:
        raise r.ParseError("map %s: the element list never ends (%s)" % (
            block, "a quote is not closed" if quoted else "no closing brace"))
    uncounted.update(n for k, n in objects if k == "map" and n in MAPS and n not in counted_maps)
    _resolve_timeouts(state, timeouts)
    return state._replace(objects=frozenset(objects), uncounted=frozenset(uncounted))


def _has_counter(words):
    """Whether a rule split into words has a counter statement (not a comment "counter")."""
    return any(w == "counter" and (i == 0 or words[i - 1] != "comment")
               for i, w in enumerate(words))


def _timeout_fields(text):
    """(protocol, l3proto, comment) of a ct timeout object as nft prints it."""
    found = [re.search(pattern, text) for pattern in
             (r"\bprotocol (\w+)", r"\bl3proto (\w+)", r'\bcomment "([^"]*)"')]
    return tuple(match.group(1) if match else None for match in found)


def parse(text, builtins=False):
    """nft -j output or nft list text -> State (``builtins`` is for iptables only)."""
    return parse_json(text) if text.lstrip().startswith("{") else parse_text(text)
