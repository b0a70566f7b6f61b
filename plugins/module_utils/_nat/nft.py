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
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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
}
# Chains declared only while they hold rules: a gateway that filters no input keeps the
# table it had before the chain existed.
OPTIONAL_CHAINS = ("input",)
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
# {set: frozenset of addresses}, the hairpin address sets
State = namedtuple("State", "present objects chains elements sets")
# map <-> address family of its lookup entries
_MAP_FAMILY = {"fwd4": 4, "fwd6": 6}
# hairpin address sets: "hp4_eth0" holds the IPv4 addresses of eth0
SET_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
_SET_NAME = re.compile(r"^hp([46])_(.+)\Z")


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
    return ("[%s]:%s" if ":" in addr else "%s:%s") % (addr, port)


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
    if rule.verdict == "snat":
        out.append("snat %s to %s" % (fam, rule.to_addr))
    elif rule.verdict == "dnat":
        out.append("dnat %s to %s" % (fam, _nat_target(rule.to_addr, rule.to_port)))
    elif rule.verdict == "helper":
        out.append("ct helper set %s" % _q(_helper_name(rule)))
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
    return "type %s;" % SET_TYPES[int(_SET_NAME.match(name).group(1))]


def _set_members(addresses):
    return ", ".join(r.check_address(a) for a in sorted(addresses))


def _object_decl(kind, name, state):
    if kind == "chain":
        return "add chain %s %s { %s }" % (TABLE, name, CHAIN_TYPES[name])
    if kind == "map":
        return "add map %s %s { %s }" % (TABLE, name, MAPS[name][1])
    if kind == "set":
        return "add set %s %s { %s }" % (TABLE, name, _set_decl(name))
    return "add " + _helper_decl(name, TABLE)


def render_full(state):
    """The whole table as one idempotent script: valid on any host state (boot, persist)."""
    lines = ["table %s {}" % TABLE, "delete table %s" % TABLE]
    if not has_rules(state):
        return "\n".join(lines) + "\n"
    lines.append("table %s {" % TABLE)
    for kind, name in sorted(state.objects):
        if kind == "ct helper":
            lines.append("\t" + _helper_decl(name))
    for name in sorted(MAPS):
        elems = sorted(state.elements[name].items())
        lines.append("\tmap %s {" % name)
        lines.append("\t\t%s" % MAPS[name][1])
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
    cmds = []
    if not have.present:
        cmds.append("add table %s" % TABLE)
    cmds.extend(_object_decl(k, n, want) for k, n in sorted(want.objects - have.objects)
                if k in ("chain", "map", "set"))
    cmds.extend(_object_decl(k, n, want) for k, n in sorted(want.objects - have.objects)
                if k == "ct helper")
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
        if have.chains.get(chain, []) != want.chains[chain] or ("chain", chain) not in have.objects:
            if ("chain", chain) in have.objects:
                cmds.append("flush chain %s %s" % (TABLE, chain))
            cmds.extend("add rule %s %s %s" % (TABLE, chain, rule_text(x))
                        for x in want.chains[chain])
    # after the rules that used them are gone (our optional chains: flushed above)
    cmds.extend("delete %s %s %s" % (k, TABLE, _object_name(n))
                for k, n in sorted(have.objects - want.objects) if k in ("ct helper", "set")
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
        elif key in ("accept", "drop", "reject", "masquerade"):
            f["verdict"] = key
        elif key in ("snat", "dnat"):
            addr = body.get("addr")
            if isinstance(addr, dict) and "map" in addr:
                f["verdict"], f["helper"] = "map", addr["map"]["data"].lstrip("@")
                continue
            f["verdict"], f["to_addr"] = key, _json_value(addr)
            if body.get("port") is not None:
                f["to_port"] = str(_json_value(body["port"]))
        elif key == "ct helper":
            f["verdict"], f["helper"] = "helper", _helper_of(body)
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


def _finish(f, source):
    """The Rule that the fields read from ``source`` make; raises _Unknown."""
    set_family = f.pop("_set_family", None)
    if "verdict" not in f:
        raise _Unknown(source)
    rule = r.normalize(r.Rule(**f))
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
    state, objects = empty_state(), set()
    for item in items:
        (kind, body), = item.items()
        if kind == "metainfo" or body.get("family") != "inet" or \
                body.get("table", body.get("name")) != "ipmasq":
            continue
        if kind == "table":
            state = state._replace(present=True)
        elif kind in ("chain", "map", "ct helper", "set"):
            objects.add((kind, body["name"]))
            if kind == "map" and body["name"] in MAPS:
                state.elements[body["name"]] = _json_elements(body.get("elem"))
            if kind == "set":
                state.sets[body["name"]] = _set_elements(body.get("elem"))
        elif kind == "rule":
            try:
                rule = _json_rule(body["chain"], body["expr"], body.get("comment"))
            except (_Unknown, AttributeError, KeyError, TypeError, ValueError):
                rule = r.Rule(body["chain"], verdict="unknown", comment=json.dumps(body["expr"]))
            state.chains.setdefault(body["chain"], []).append(rule)
    return state._replace(objects=frozenset(objects))


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
            else:
                raise _Unknown(tokens)
        elif tok in ("accept", "drop", "masquerade"):
            f["verdict"] = tok
        elif tok == "reject":
            f["verdict"] = tok
            if tokens[nonlocal_i[0]:nonlocal_i[0] + 1] == ["with"]:
                take(3)
        elif tok in ("snat", "dnat"):
            fam, to, target = take(3)
            if target == "iifname":
                f["verdict"], f["helper"] = "map", tokens[-1].lstrip("@")
                break
            f["verdict"] = tok
            if target.startswith("["):
                addr, port = target[1:].split("]:")
            elif fam == "ip" and ":" in target:
                addr, port = target.split(":")
            else:
                addr, port = target, None
            f["to_addr"], f["to_port"] = addr, port
        elif tok == "counter":
            if tokens[nonlocal_i[0]:nonlocal_i[0] + 1] == ["packets"]:
                take(4)
        elif tok == "comment":
            f["comment"] = take()[0]
        else:
            raise _Unknown(tokens)
    return _finish(f, tokens)


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
    if block in state.sets:
        state.sets[block] = _set_elements(w.rstrip(",") for w in text.split())
    else:
        state.elements[block] = _text_elements(text)


def parse_text(text):
    """``nft list table inet ipmasq`` output, or a script we rendered -> State."""
    state, objects = empty_state(), set()
    chain = block = None
    pending, quoted = None, False  # the lines of an element list not closed yet
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
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
            if words[0] == "set":
                state.sets[words[1]] = frozenset()
        elif line.startswith("ct helper "):
            objects.add(("ct helper", words[2]))
            chain = block = None
        elif line == "}":
            chain = block = None
        elif block and line.startswith("elements = {"):
            rest = line[line.index("{") + 1:]
            end, quoted = _close_brace(rest)
            if end >= 0:
                _block_elements(state, block, rest[:end])
            else:
                pending = [rest]
        elif chain and not line.startswith("type "):
            try:
                rule = _text_rule(chain, shlex.split(line))
            except (_Unknown, ValueError, TypeError):
                rule = r.Rule(chain, verdict="unknown", comment=line)
            state.chains.setdefault(chain, []).append(rule)
    if pending is not None:
        raise r.ParseError("map %s: the element list never ends (%s)" % (
            block, "a quote is not closed" if quoted else "no closing brace"))
    return state._replace(objects=frozenset(objects))


def parse(text, builtins=False):
    """nft -j output or nft list text -> State (``builtins`` is for iptables only)."""
    return parse_json(text) if text.lstrip().startswith("{") else parse_text(text)
