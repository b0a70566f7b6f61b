# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""Backend-neutral rules: the model as the chains that implement it, and back.

A ``Rule`` is one netfilter rule in one of our chains, written with the few matches and
verdicts the collection uses. ``nft.py`` and ``iptables.py`` only translate Rules to and
from their syntax, so both backends share every decision made here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import json
import re
import unicodedata
from collections import namedtuple

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m

# npt_in / npt_out hold the prefix translation (NPTv6), which runs ahead of the other NAT.
CHAINS = ("prerouting", "postrouting", "forward", "helpers", "input", "npt_in", "npt_out")

# local_if: the destination is one of the addresses interface ``local_if`` holds (a hairpin
# DNAT); the backends keep those addresses in a set per interface and family, which the
# module fills at every run and ``ipmasq-refresh`` refills between runs (see
# ``address_sets``). local_dst ("any local address") is what hairpin rules used before;
# it is still read, so that an old rule is recognised and replaced.
# A to_addr with a prefix length ("192.168.77.0/29") maps address for address (NETMAP,
# nft "prefix to", ip6tables SNPT/DNPT in the npt chains); to_port of a masquerade or snat
# is the range of source ports it picks from. nat_flags: ("fully-random", "persistent")
# or part of it. ct_count: with verdict reject or drop, only when the source address
# holds more connections than that (a MAXCON). ct_timeout: verdict "timeout", the
# connection-state timeouts ((state, seconds), ...) its protocol's connections get.
Rule = namedtuple(
    "Rule",
    "chain iif iif_neg oif saddr daddr proto dport ct_state ct_dnat local_dst "
    "verdict to_addr to_port helper comment local_if nat_flags ct_count ct_timeout")
Rule.__new__.__defaults__ = (None, False, None, None, None, None, None, None, False, False,
                             None, None, None, None, None, None, None, None, None)
NAT_FLAGS = ("fully-random", "persistent")
# Per protocol, the connection states a timeout rule may set, in the order they are kept.
TIMEOUT_STATES = {
    "tcp": ("syn_sent", "syn_recv", "established", "fin_wait", "close_wait", "last_ack",
            "time_wait", "close"),
    "udp": ("unreplied", "replied"),
}

# The one rule that lets port-forwarded (DNATed) traffic through the forward chain,
# ahead of the user's forward list, so an inbound drop cannot block the forwards.
DNAT_ACCEPT = Rule("forward", ct_dnat=True, verdict="accept")


def input_frame(interface):
    """The rules around the ``input`` entries of one interface: (head, tail).

    Listing an entry turns filtering on for its interface: replies to the gateway's own
    connections come back (head), then the listed traffic, then ICMPv6, without which IPv6
    cannot find its neighbours (RFC 4890 lets the rest of it in too), and a drop of
    everything else that comes in by that interface (tail). Other interfaces are not
    filtered."""
    head = [Rule("input", iif=interface, ct_state=("established", "related"), verdict="accept")]
    tail = [Rule("input", iif=interface, proto="icmpv6", verdict="accept"),
            Rule("input", iif=interface, verdict="drop")]
    return head, tail


def _input_rules(entries):
    out, by_interface = [], {}
    for entry in entries:
        by_interface.setdefault(entry.in_interface, []).append(entry)
    for interface in sorted(by_interface):
        head, tail = input_frame(interface)
        out.extend(head)
        out.extend(Rule("input", iif=interface, saddr=e.source, proto=e.protocol, dport=e.port,
                        verdict="accept", comment=e.comment) for e in by_interface[interface])
        out.extend(tail)
    return out


class ParseError(ValueError):
    """Text that is not a ruleset the collection can read."""


class RenderError(ValueError):
    """A value that must not reach rule text. The model refuses such input first; this is
    the last guard, where values turn into text for nft or iptables-restore."""


# What each field of a Rule may hold when it is rendered. Any other character (a newline,
# a quote, '%', ';', '{') could end a token, a rule or a line of the script.
_NET = re.compile(r"^[0-9A-Fa-f.:]+/[0-9]{1,3}\Z")
_PORTS = re.compile(r"^[0-9]{1,5}(-[0-9]{1,5})?\Z")
# An interface, or a pattern with its + only at the end ("ppp+"), 15 characters at most.
_IFACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,%d}\Z|^[A-Za-z0-9_][A-Za-z0-9_.-]{0,%d}\+\Z"
                    % (m.IFNAME_MAX - 1, m.IFNAME_MAX - 2))
_TOKENS = {
    "iif": _IFACE, "oif": _IFACE,
    # it names a set as well: the interface name rules, and their length, strictly
    "local_if": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,%d}\Z" % (m.IFNAME_MAX - 1)),
    "saddr": _NET, "daddr": _NET,
    "proto": re.compile(r"^(tcp|udp|icmp|icmpv6)\Z"),
    "dport": _PORTS, "to_port": _PORTS,
    "to_addr": re.compile(r"^[0-9A-Fa-f.:]+(-[0-9A-Fa-f.:]+|/[0-9]{1,3})?\Z"),
    "helper": re.compile(r"^[a-z][a-z0-9-]{0,31}\Z"),
    "verdict": re.compile(
        r"^(accept|drop|reject|masquerade|snat|dnat|helper|map|timeout|notrack|unknown)\Z"),
    "ct_count": re.compile(r"^[1-9][0-9]{0,6}\Z"),
}


_FLAGS = ("iif_neg", "ct_dnat", "local_dst")


def _safe_comment(text):
    return isinstance(text, str) and '"' not in text and "\\" not in text and not any(
        unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in text)


def check_token(field, value):
    """``value`` as it may appear in rule text for ``field``; raises RenderError."""
    if value is None:
        return value
    if field in _FLAGS:
        ok = isinstance(value, bool)
    elif field == "comment":
        ok = _safe_comment(value) and len(value.encode("utf-8")) <= m.COMMENT_MAX
    elif field == "ct_state":
        ok = isinstance(value, tuple) and all(s in m.CT_STATES for s in value)
    elif field == "nat_flags":
        ok = isinstance(value, tuple) and bool(value) and all(f in NAT_FLAGS for f in value)
    elif field == "ct_timeout":
        states = set(x for names in TIMEOUT_STATES.values() for x in names)
        ok = isinstance(value, tuple) and bool(value) and all(
            isinstance(pair, tuple) and len(pair) == 2 and pair[0] in states
            and isinstance(pair[1], int) and not isinstance(pair[1], bool)
            and 1 <= pair[1] <= m.TIMEOUT_MAX for pair in value)
    else:
        ok = isinstance(value, str) and bool(_TOKENS[field].match(value))
    if not ok:
        raise RenderError("refusing to render %s %s" % (field, m.echo(value)))
    return value


def interface_of_set(pattern, name, family=None):
    """The interface a hairpin set's name carries, by the backend's naming ``pattern`` (a
    regex whose groups are the family and the interface); None when the name is not one
    of ours, or is of another family than ``family``."""
    match = pattern.match(name)
    if not match or (family is not None and int(match.group(1)) != family):
        return None
    try:
        return check_token("local_if", match.group(2))
    except RenderError:
        return None


def check_rule(rule):
    """``rule`` if every field is safe to render; raises RenderError.

    A rule read from the host that the module does not understand (verdict ``unknown``)
    keeps its original text in ``comment``: that text may hold anything but a line break.
    """
    if rule.verdict == "unknown":
        if not isinstance(rule.comment, str) or any(
                unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in rule.comment):
            raise RenderError("refusing to render %s" % m.echo(rule.comment))
        return rule
    for field, value in zip(Rule._fields[1:], rule[1:]):
        check_token(field, value)
    return rule


def rule_family(rule):
    """4, 6 or None (a rule without addresses applies to both)."""
    if rule.helper in m.IPV4_ONLY_HELPERS:
        return 4
    return m.family_of(rule.saddr, rule.daddr, rule.to_addr)


def norm_net(text):
    """Canonical CIDR text for an address or network as a backend prints it."""
    return ipaddress.ip_network(text, strict=False).with_prefixlen


def normalize(rule):
    """The one spelling of a parsed rule, so that it compares equal to a rendered one."""
    changes = {}
    for name in ("saddr", "daddr"):
        value = getattr(rule, name)
        if value:
            changes[name] = norm_net(value)
    if rule.to_port is not None and rule.to_port == rule.dport:
        changes["to_port"] = None
    if rule.ct_state:
        changes["ct_state"] = tuple(s for s in m.CT_STATES if s in rule.ct_state)
    return rule._replace(**changes) if changes else rule


def _host_prefix(addr):
    return addr + ("/128" if ":" in addr else "/32")


def _pf_rules(pf):
    dnat = Rule("prerouting", iif=pf.in_interface, saddr=pf.source, proto=pf.protocol,
                dport=pf.port, verdict="dnat", to_addr=pf.to_address, to_port=pf.to_port,
                comment=pf.comment)
    if not pf.hairpin:
        return [dnat], []
    # Hairpin: the same forward for clients behind other interfaces, but only towards the
    # in_interface's own addresses (not the gateway's other addresses, where its own
    # services listen) and only from the entry's source, like the forward itself.
    loop_in = dnat._replace(iif_neg=True, local_if=pf.in_interface)
    # The way back: the inside host must answer through the gateway, so the connections
    # this forward translated for such clients leave with the gateway's address.
    loop_out = Rule("postrouting", iif=pf.in_interface, iif_neg=True, saddr=pf.source,
                    daddr=_host_prefix(pf.to_address), proto=pf.protocol,
                    dport=pf.to_port or pf.port, ct_dnat=True, verdict="masquerade",
                    comment=pf.comment)
    return [dnat, loop_in], [loop_out]


def is_hairpin_dnat(rule):
    """Whether ``rule`` is the hairpin DNAT of a port forward: the current form (towards
    the in_interface's addresses) or the form before (towards any local address)."""
    return rule.verdict == "dnat" and rule.iif_neg and (
        rule.local_dst or (rule.local_if is not None and rule.local_if == rule.iif))


def hairpin_interfaces(ruleset):
    """The interfaces whose addresses the hairpin rules of ``ruleset`` need, sorted."""
    return sorted(set(pf.in_interface for pf in ruleset.get("port_forwards", ())
                      if pf.hairpin))


def static_forward_interfaces(ruleset):
    """The interfaces that have both a static NAT and port forwards (patterns aside)."""
    forwarded = set(pf.in_interface for pf in ruleset.get("port_forwards", ()))
    return sorted(set(e.interface for e in ruleset.get("static_nat", ())
                      if e.interface in forwarded and not m.is_pattern(e.interface)))


def check_static_addresses(ruleset, addresses):
    """Refuse a static NAT whose external address is one its interface holds while port
    forwards use that interface: the static NAT would take every port of the address the
    forwards publish (and the gateway's own services on it). ``addresses``: {interface:
    addresses}, as ``global_addresses`` reads them. Raises model.ConfigError."""
    for entry in ruleset.get("static_nat", ()):
        forwards = [pf for pf in ruleset.get("port_forwards", ())
                    if pf.in_interface == entry.interface]
        external = ipaddress.ip_network(_as_network(entry.external))
        held = [a for a in addresses.get(entry.interface, ()) if m.family_of(a) ==
                external.version and ipaddress.ip_address(a) in external]
        if forwards and held:
            pf = forwards[0]
            raise m.ConfigError(
                "static_nat (interface %s, external %s).external: %s is an address of %s, "
                "where port_forwards (in_interface %s, protocol %s, port %s) forwards "
                "%s/%s too; a static NAT takes every port of its external address, so give "
                "it an address the port forwards do not use (got %s)" % (
                    entry.interface, entry.external, held[0], entry.interface,
                    pf.in_interface, pf.protocol, pf.port, pf.protocol, pf.port,
                    m.echo(entry.external)))


def address_sets(chains, addresses=None):
    """{(family, interface): frozenset of addresses} for every (family, interface) that a
    rule of ``chains`` matches with ``local_if``. ``addresses`` ({interface: addresses}, as
    ``global_addresses`` reads them) fills them; an interface it lacks (absent, down, a PPP
    link not up yet) gets an empty set, which matches nothing until it is refilled."""
    out = {}
    for rule in (x for rules in chains.values() for x in rules):
        if rule.local_if is not None:
            family = rule_family(rule)
            out[(family, rule.local_if)] = frozenset(
                a for a in (addresses or {}).get(rule.local_if, ())
                if m.family_of(a) == family)
    return out


def check_address(value):
    """``value`` if it is a plain unicast address, safe in a set of rule text; raises
    RenderError. Set elements come from the host (``ip``), not from the validated model."""
    ok = isinstance(value, str) and bool(_ADDRESS.match(value))
    if ok:
        try:
            ok = str(ipaddress.ip_address(value)) == value
        except ValueError:
            ok = False
    if not ok:
        raise RenderError("refusing to render address %s" % m.echo(value))
    return value


_ADDRESS = re.compile(r"^[0-9a-f.:]{2,39}\Z")


def global_addresses(ip_json, interfaces):
    """``ip -j addr show`` output -> {interface: tuple of addresses} for ``interfaces``: the
    addresses of global scope, which is what the refresh script takes too (``ip addr show
    scope global``). Link-local and host addresses never reach a forward from outside."""
    try:
        links = json.loads(ip_json or "[]")
    except ValueError as exc:
        raise ParseError("not ip -j addr output: %s" % str(exc)[:200])
    wanted, out = set(interfaces), dict((name, ()) for name in interfaces)
    for link in links if isinstance(links, list) else ():
        name = link.get("ifname") if isinstance(link, dict) else None
        if name not in wanted:
            continue
        found = set()
        for info in link.get("addr_info") or ():
            if info.get("scope") != "global" or info.get("family") not in ("inet", "inet6"):
                continue
            try:
                found.add(str(ipaddress.ip_address(info.get("local"))))
            except ValueError:
                continue
        out[name] = tuple(sorted(found, key=lambda a: (m.family_of(a), a)))
    return out


def lookup_entry(pf):
    """A port forward as a lookup entry, ``(iif, proto, port), (to_addr, to_port, comment)``,
    or None. A DNAT on one port from any source is decided by those three fields alone, so a
    backend may keep such forwards in a keyed table (nft maps) instead of a rule each."""
    if pf.source is not None or not m.digits(pf.port) or m.is_pattern(pf.in_interface):
        return None  # (a map key matches one interface name exactly, never a pattern)
    return (pf.in_interface, pf.protocol, pf.port), (pf.to_address, pf.to_port, pf.comment)


def _empty_lookups():
    return {4: {}, 6: {}}


def lookup_rules(lookups):
    """Lookup entries as the prerouting DNAT rules they stand for (for text output), IPv4
    first, each family by key."""
    return [Rule("prerouting", iif=iif, proto=proto, dport=port, verdict="dnat", to_addr=addr,
                 to_port=to_port, comment=comment)
            for family in sorted(lookups)
            for (iif, proto, port), (addr, to_port, comment) in sorted(lookups[family].items())]


def _as_network(value):
    """A static NAT's address or network as the prefix its rules map ("a/32" for "a")."""
    return value if "/" in value else _host_prefix(value)


def _nat_flags(entry):
    flags = (("fully-random",) if entry.random_fully else ()) + (
        ("persistent",) if getattr(entry, "persistent", False) else ())
    return flags or None


def _nat_rules(entry):
    """A masquerade or snat entry as rules: with ``ports``, one rule per protocol that has
    ports (tcp, udp) picks from them, and a last one takes the rest (ICMP...)."""
    to = getattr(entry, "to_address", None)
    rule = Rule("postrouting", saddr=entry.source, oif=entry.out_interface,
                verdict="snat" if to else "masquerade", to_addr=to, comment=entry.comment,
                nat_flags=_nat_flags(entry))
    if not entry.ports:
        return [rule]
    return [rule._replace(proto=proto, to_port=entry.ports) for proto in ("tcp", "udp")] + [rule]


def _static_rules(entry):
    """(prerouting, postrouting, hairpin return) rules of a static NAT entry."""
    external, internal = _as_network(entry.external), _as_network(entry.internal)
    dnat = Rule("prerouting", iif=entry.interface, saddr=entry.source, daddr=external,
                verdict="dnat", to_addr=internal, comment=entry.comment)
    snat = Rule("postrouting", oif=entry.interface, saddr=internal, verdict="snat",
                to_addr=external, comment=entry.comment)
    if not entry.hairpin:
        return [dnat], [snat], []
    # Clients behind other interfaces that use the external address: the same mapping,
    # and the way back through the gateway (as a hairpin port forward does).
    back = Rule("postrouting", iif=entry.interface, iif_neg=True, saddr=entry.source,
                daddr=internal, ct_dnat=True, verdict="masquerade", comment=entry.comment)
    return [dnat, dnat._replace(iif_neg=True)], [snat], [back]


def _npt_rules(entry):
    return (Rule("npt_in", iif=entry.interface, daddr=entry.external, verdict="dnat",
                 to_addr=entry.internal, comment=entry.comment),
            Rule("npt_out", oif=entry.interface, saddr=entry.internal, verdict="snat",
                 to_addr=entry.external, comment=entry.comment),
            # translated, the inside prefix is reachable from the interface, as a static
            # NAT's internal address is (and iptables' stateless NPT needs it for replies)
            Rule("forward", iif=entry.interface, daddr=entry.internal, verdict="accept",
                 comment=entry.comment))


def npt_notrack_rules(entry):
    """The flows a stateless NPT (ip6tables' SNPT/DNPT) translates, kept out of connection
    tracking, as its documentation requires: tracked, a reply to a translated address
    would be a new or an invalid connection."""
    return [Rule("helpers", iif=entry.interface, daddr=entry.external, verdict="notrack",
                 comment=entry.comment),
            Rule("helpers", saddr=entry.internal, verdict="notrack", comment=entry.comment)]


def _limit_rule(entry):
    return Rule("forward", saddr=entry.source,
                proto=None if entry.protocol == "any" else entry.protocol, ct_state=("new",),
                ct_count=str(entry.per_address), verdict=entry.action)


def timeout_rules(entries):
    """The rules that give the connections of each source its NAT entry's timeouts, one per
    protocol (sources with equal timeouts: model._check_timeouts_per_source)."""
    out, done = [], set()
    for entry in entries:
        if not entry.timeouts or entry.source in done:
            continue
        done.add(entry.source)
        for proto in sorted(TIMEOUT_STATES):
            policy = dict((m.TIMEOUT_KEYS[key][1], seconds) for key, seconds in entry.timeouts
                          if m.TIMEOUT_KEYS[key][0] == proto)
            if policy:
                out.append(Rule("helpers", saddr=entry.source, proto=proto, verdict="timeout",
                                ct_timeout=tuple((state, policy[state])
                                                 for state in TIMEOUT_STATES[proto]
                                                 if state in policy)))
    return out


def timeout_text(rule):
    """A timeout rule's policy as text: "established=960,close=10" (object comments)."""
    return ",".join("%s=%d" % pair for pair in check_token("ct_timeout", rule.ct_timeout))


def timeout_name(rule):
    """The name of the timeout object a timeout rule uses: its family, protocol and a hash
    of its policy, so that equal policies share one object."""
    digest = hashlib.sha1(("%s %s" % (rule.proto, timeout_text(rule))).encode()).hexdigest()
    return "ipmasq%d%s_%s" % (rule_family(rule) or 4, rule.proto[0], digest[:12])


def to_rules(ruleset, lookups=False, stateless_npt=False):
    """The model as ({chain: [Rule]}, lookups) in the order the kernel must see them.

    With ``lookups``, each forward that ``lookup_entry`` accepts leaves its DNAT out of
    prerouting and into ``{family: {key: value}}`` instead (its hairpin rules stay rules);
    without, that dict stays empty. ``stateless_npt``: the backend translates prefixes
    without connection tracking (ip6tables), so the translated flows are not tracked.
    """
    chains = dict((c, []) for c in CHAINS)
    table = _empty_lookups()
    nat_entries = ruleset.get("masquerade", ()) + ruleset.get("snat", ())
    for e in nat_entries:
        chains["postrouting"].extend(_nat_rules(e))
    # NAT sources were sorted most-specific first across both kinds (a stable sort: the
    # rules of one entry keep their order).
    chains["postrouting"].sort(key=lambda r: m._prefix_sort_key(
        m.Masquerade(r.saddr, r.oif, None)))
    hairpins = []
    static_pre, static_post = [], []
    for entry in ruleset.get("static_nat", ()):
        pre, post, back = _static_rules(entry)
        static_pre.extend(pre)
        static_post.extend(post)
        hairpins.extend(back)
    # a static NAT takes every port of its external address, ahead of the port forwards;
    # its internal host leaves as the external address, ahead of masquerade and SNAT
    chains["prerouting"].extend(static_pre)
    chains["postrouting"][:0] = static_post
    for pf in ruleset.get("port_forwards", ()):
        entry = lookup_entry(pf) if lookups else None
        if entry is not None:
            table[6 if ":" in pf.to_address else 4][entry[0]] = entry[1]
            if not pf.hairpin:
                continue  # the common case at scale: no Rule at all
        pre, post = _pf_rules(pf)
        chains["prerouting"].extend(pre[1:] if entry is not None else pre)
        hairpins.extend(post)
    chains["postrouting"].extend(hairpins)
    chains["forward"].extend(_limit_rule(e) for e in ruleset.get("connection_limits", ()))
    if ruleset.get("port_forwards") or ruleset.get("static_nat"):
        chains["forward"].append(DNAT_ACCEPT)
    for entry in ruleset.get("npt", ()):
        npt_in, npt_out, accept = _npt_rules(entry)
        chains["npt_in"].append(npt_in)
        chains["npt_out"].append(npt_out)
        chains["forward"].append(accept)
    for f in ruleset.get("forward", ()):
        chains["forward"].append(Rule(
            "forward", iif=f.in_interface, oif=f.out_interface, saddr=f.source,
            daddr=f.destination, proto=f.protocol, dport=f.port, ct_state=f.ct_state,
            verdict=f.action, comment=f.comment))
    if stateless_npt:
        for entry in ruleset.get("npt", ()):
            chains["helpers"].extend(npt_notrack_rules(entry))
    for h in ruleset.get("helpers", ()):
        chains["helpers"].append(Rule("helpers", proto=h.protocol, dport=h.port,
                                      verdict="helper", helper=h.helper))
    # after the helpers: iptables' CT target sets a connection's template once, and a
    # helper matters more to a connection than its timeouts
    chains["helpers"].extend(timeout_rules(nat_entries))
    chains["input"] = _input_rules(ruleset.get("input", ()))
    return chains, table


_FIELD_INDEX = dict((name, i) for i, name in enumerate(Rule._fields))
_UNSET = (None, False)


def _only(*allowed):
    """A test that a rule sets no field outside ``allowed`` (chain and verdict aside)."""
    others = [i for name, i in _FIELD_INDEX.items()
              if name not in allowed and name not in ("chain", "verdict")]
    return lambda rule: all(rule[i] in _UNSET for i in others)


_NAT_ONLY = _only("saddr", "oif", "comment", "proto", "to_port", "nat_flags")
_SNAT_ONLY = _only("saddr", "oif", "comment", "to_addr", "proto", "to_port", "nat_flags")
_STATIC_IN_ONLY = _only("iif", "iif_neg", "saddr", "daddr", "to_addr", "comment")
_STATIC_OUT_ONLY = _only("oif", "saddr", "to_addr", "comment")
_LIMIT_ONLY = _only("saddr", "proto", "ct_state", "ct_count")
_TIMEOUT_ONLY = _only("saddr", "proto", "ct_timeout")
_PF_ONLY = _only("iif", "saddr", "proto", "dport", "to_addr", "to_port", "comment")
_FWD_ONLY = _only("iif", "oif", "saddr", "daddr", "proto", "dport", "ct_state", "comment")
_HELPER_ONLY = _only("proto", "dport", "helper")
_INPUT_ONLY = _only("iif", "saddr", "proto", "dport", "comment")


def from_rules(chains, lookups=None):
    """Read {chain: [Rule]} and lookup entries (as ``to_rules`` makes them) back into the model.

    Returns (ruleset, foreign): rules that no model entry produces land in ``foreign``,
    which makes the chain differ from its re-rendering, so the next apply repairs it.
    """
    out = dict((k, []) for k in m.KINDS)
    for family in sorted(lookups or ()):
        out["port_forwards"].extend(
            m.PortForward(iif, proto, port, addr, to_port, None, False, comment)
            for (iif, proto, port), (addr, to_port, comment) in lookups[family].items())
    foreign, hairpin_keys = [], set()
    statics, static_out = _read_statics(chains, foreign)
    nat_rules = []
    for rule in chains.get("postrouting", ()):
        if rule.verdict == "masquerade" and rule.ct_dnat and rule.iif_neg:
            continue  # hairpin return path, implied by its port forward or static NAT
        if rule.verdict == "snat" and rule.to_addr and "/" in rule.to_addr:
            if rule not in static_out:
                foreign.append(rule)
        elif rule.verdict in ("masquerade", "snat") and rule.oif and \
                (_SNAT_ONLY if rule.verdict == "snat" else _NAT_ONLY)(rule):
            nat_rules.append(rule)
        else:
            foreign.append(rule)
    _read_nat(nat_rules, out, foreign)
    out["static_nat"] = statics
    for rule in chains.get("prerouting", ()):
        if rule.verdict == "dnat" and rule.to_addr and "/" in rule.to_addr:
            continue  # a static NAT's, read above
        if is_hairpin_dnat(rule):
            hairpin_keys.add((rule.iif, rule.proto, rule.dport))
        elif rule.verdict == "dnat" and rule.iif and rule.proto in ("tcp", "udp") \
                and rule.dport and rule.to_addr and _PF_ONLY(rule):
            out["port_forwards"].append(m.PortForward(
                rule.iif, rule.proto, rule.dport, rule.to_addr, rule.to_port, rule.saddr,
                False, rule.comment))
        else:
            foreign.append(rule)
    if hairpin_keys:
        out["port_forwards"] = [
            pf._replace(hairpin=(pf.in_interface, pf.protocol, pf.port) in hairpin_keys)
            for pf in out["port_forwards"]]
    out["npt"] = _read_npt(chains, foreign)
    implied = set(_npt_rules(e)[2] for e in out["npt"])
    if out["static_nat"] or out["port_forwards"]:
        implied.add(DNAT_ACCEPT)
    forward = []
    for rule in chains.get("forward", ()):
        if rule.ct_count and _LIMIT_ONLY(rule) and rule.verdict in m.LIMIT_ACTIONS and \
                rule.saddr and rule.ct_state == ("new",) and rule.proto in (None, "tcp", "udp"):
            out["connection_limits"].append(m.ConnectionLimit(
                rule.saddr, int(rule.ct_count), rule.proto or "any", rule.verdict))
        else:
            forward.append(rule)
    # the rules the kinds above bring, in front of the user's (iptables keeps the families
    # apart, so a family's rules may come first when the chains are merged back)
    for rule in list(forward):
        if rule in implied:
            implied.discard(rule)
            forward.remove(rule)
    for rule in forward:
        if rule.verdict in m.FORWARD_ACTIONS and _FWD_ONLY(rule):
            out["forward"].append(m.Forward(
                rule.iif, rule.oif, rule.saddr, rule.daddr, rule.proto, rule.dport,
                rule.ct_state, rule.verdict, rule.comment))
        else:
            foreign.append(rule)
    timeouts = {}
    untracked = set(x for e in out["npt"] for x in npt_notrack_rules(e))
    for rule in chains.get("helpers", ()):
        if rule in untracked:
            continue  # implied by its npt entry (a backend without stateful NPT)
        if rule.verdict == "helper" and rule.helper and rule.proto and rule.dport \
                and _HELPER_ONLY(rule):
            out["helpers"].append(m.Helper(rule.helper, rule.proto, rule.dport))
        elif rule.verdict == "timeout" and rule.saddr and rule.proto in TIMEOUT_STATES \
                and rule.ct_timeout and _TIMEOUT_ONLY(rule):
            timeouts.setdefault(rule.saddr, []).append(rule)
        else:
            foreign.append(rule)
    _attach_timeouts(out, timeouts, foreign)
    frames = set()
    for rule in chains.get("input", ()):
        frames.update(x for part in input_frame(rule.iif) for x in part)
    for rule in chains.get("input", ()):
        if rule in frames:
            continue  # implied by the entries of its interface
        if rule.verdict == "accept" and rule.iif and _INPUT_ONLY(rule) and (
                rule.proto in ("tcp", "udp") and rule.dport
                or rule.proto == "icmp" and not rule.dport):
            out["input"].append(m.Input(rule.iif, rule.proto, rule.dport, rule.saddr,
                                        rule.comment))
        else:
            foreign.append(rule)
    ruleset = dict((k, m.canonical(k, v)) for k, v in out.items())
    return ruleset, foreign


def _read_statics(chains, foreign):
    """The static NAT entries of prerouting and postrouting (each needs both its rules):
    (entries, the postrouting rules they account for)."""
    outbound = {}
    for rule in chains.get("postrouting", ()):
        if rule.verdict == "snat" and rule.to_addr and "/" in rule.to_addr and rule.saddr \
                and rule.oif and _STATIC_OUT_ONLY(rule):
            outbound.setdefault((rule.oif, rule.to_addr, rule.saddr, rule.comment), rule)
    entries, hairpins, used = [], set(), set()
    for rule in chains.get("prerouting", ()):
        if not (rule.verdict == "dnat" and rule.to_addr and "/" in rule.to_addr):
            continue
        key = (rule.iif, rule.daddr, rule.to_addr, rule.comment)
        if not (rule.iif and rule.daddr and _STATIC_IN_ONLY(rule)) or key not in outbound:
            foreign.append(rule)
        elif rule.iif_neg:
            hairpins.add((key, rule.saddr))
        else:
            used.add(key)
            entries.append(m.StaticNat(rule.iif, _as_address(rule.daddr),
                                       _as_address(rule.to_addr), rule.saddr, False,
                                       rule.comment))
    for key, source in hairpins - set(((e.interface, _as_network(e.external),
                                        _as_network(e.internal), e.comment), e.source)
                                      for e in entries):
        foreign.append(Rule("prerouting", iif=key[0], iif_neg=True, saddr=source,
                            daddr=key[1], verdict="dnat", to_addr=key[2], comment=key[3]))
    entries = [e._replace(hairpin=((e.interface, _as_network(e.external),
                                    _as_network(e.internal), e.comment), e.source) in hairpins)
               for e in entries]
    return entries, set(rule for key, rule in outbound.items() if key in used)


def _as_address(network):
    """A /32 or /128 prefix as its address (the model's spelling of one host)."""
    return network.split("/")[0] if network.endswith(("/32", "/128")) else network


def _read_nat(rules, out, foreign):
    """Masquerade and snat entries from their postrouting rules: a plain rule each, and
    with ``ports`` a tcp and a udp rule with those ports in front of it."""
    ported = {}
    for rule in rules:
        if rule.proto is not None or rule.to_port is not None:
            ported.setdefault(rule._replace(proto=None, to_port=None), []).append(rule)
    for rule in rules:
        if rule.proto is not None or rule.to_port is not None:
            continue
        extra = ported.pop(rule, [])
        ports = set(x.to_port for x in extra)
        if extra and (sorted(x.proto for x in extra) != ["tcp", "udp"] or len(ports) != 1
                      or None in ports):
            foreign.extend(extra)
            ports = set([None])
        flags = rule.nat_flags or ()
        common = dict(ports=ports.pop() if ports else None,
                      random_fully="fully-random" in flags)
        if rule.verdict == "snat":
            out["snat"].append(m.Snat(rule.saddr, rule.oif, rule.to_addr, rule.comment,
                                      persistent="persistent" in flags, **common))
        elif "persistent" in flags:
            foreign.append(rule)
        else:
            out["masquerade"].append(m.Masquerade(rule.saddr, rule.oif, rule.comment, **common))
    for extra in ported.values():
        foreign.extend(extra)


def _read_npt(chains, foreign):
    outbound = dict(((r.oif, r.saddr, r.to_addr, r.comment), r)
                    for r in chains.get("npt_out", ()))
    entries = []
    for rule in chains.get("npt_in", ()):
        key = (rule.iif, rule.to_addr, rule.daddr, rule.comment)
        if rule.verdict == "dnat" and rule.iif and rule.daddr and rule.to_addr and \
                key in outbound and _only("iif", "daddr", "to_addr", "comment")(rule):
            entries.append(m.Npt(rule.iif, rule.to_addr, rule.daddr, rule.comment))
            outbound.pop(key)
        else:
            foreign.append(rule)
    foreign.extend(outbound.values())
    return entries


def _attach_timeouts(out, timeouts, foreign):
    """Give the masquerade and snat entries of each source the timeouts of its rules."""
    by_source = {}
    for source, found in timeouts.items():
        keys = dict((m.TIMEOUT_KEYS_BY_STATE[(rule.proto, state)], seconds)
                    for rule in found for state, seconds in rule.ct_timeout)
        by_source[source] = tuple(sorted(keys.items()))
    used = set()
    for kind in ("masquerade", "snat"):
        replaced = []
        for entry in out[kind]:
            if entry.source in by_source:
                used.add(entry.source)
                entry = entry._replace(timeouts=by_source[entry.source])
            replaced.append(entry)
        out[kind] = replaced
    for source in set(timeouts) - used:
        foreign.extend(timeouts[source])  # timeouts without a NAT entry: not ours to keep


def split_by_family(rules, family):
    """The rules that apply to one address family (iptables vs ip6tables)."""
    return [r for r in rules if rule_family(r) in (None, family)]


def merge_families(v4_rules, v6_rules):
    """Inverse of split_by_family: rules without addresses appear in both lists once."""
    out, i, j = [], 0, 0
    while i < len(v4_rules) or j < len(v6_rules):
        a = v4_rules[i] if i < len(v4_rules) else None
        b = v6_rules[j] if j < len(v6_rules) else None
        if a is not None and rule_family(a) == 4:
            out.append(a)
            i += 1
        elif b is not None and rule_family(b) == 6:
            out.append(b)
            j += 1
        elif a is not None and a == b:
            out.append(a)
            i += 1
            j += 1
        elif a is not None:  # present in one family only: keep it, drift repair sees it
            out.append(a)
            i += 1
        else:
            out.append(b)
            j += 1
    return out
