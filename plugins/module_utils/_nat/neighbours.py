# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""Other tools' filters on the forward hook: would they drop what our rules accept? (pure)

Every base chain on the netfilter forward hook gets a say about each packet: an accept in
``table inet ipmasq`` does not stop a drop in Docker's or ufw's iptables ``FORWARD`` chain
(policy DROP), or in firewalld's ``filter_FORWARD`` (a final reject). The traffic our rules
accept is turned into flows (``flows``); each foreign base chain is walked for each flow
(``evaluate``), following jumps. A flow counts as dropped only when a rule certainly
matches all of it and drops it, or when it reaches the end of a chain whose policy is
drop; a match this code cannot read (an ipset, a mark) makes a rule uncertain, and an
uncertain drop is not reported. With the iptables backend, our jump sits inside the
iptables ``FORWARD`` chain (after ``DOCKER-USER`` and ufw's user chains) and accepts our
flows there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
from collections import namedtuple

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import foreign
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat.iptables import FORWARD_ANCHORS

# where: how a user finds it ("table ip filter chain FORWARD"); origin: "nft",
# "iptables-nft" or "iptables-legacy"; family: 4, 6 or None (an inet table); rules:
# [(FRule, text)]; chains: {name: [(FRule, text)]} of the same table, for jumps
Chain = namedtuple("Chain", "where origin family table name policy rules chains manager")
# One kind of traffic our rules accept: iif/oif None when unknown; saddr/daddr networks or
# None (any); state "new" or "established"; dnat: a port forward's connection
Flow = namedtuple("Flow", "family iif oif saddr daddr proto dport state dnat label")
Finding = namedtuple("Finding", "chain rule flows")  # rule: the text, or None for the policy

ALL, SOME, NONE = 2, 1, 0
MAX_DEPTH = 16
ORIGINS = ("iptables-nft", "iptables-legacy")


# ---------------------------------------------------------------- reading the chains

def _manager(table, rules_and_chains):
    manager = foreign.table_manager(table)
    if manager:
        return manager
    for rule, _text in rules_and_chains:
        if rule.verdict in ("jump", "goto"):
            found = foreign.chain_manager(rule.target or "")
            if found:
                return found
    return None


def items_of(ruleset):
    """``nft -j`` output as its list of items: decoded already, or text to decode ([] for
    text that is not nft -j output)."""
    if isinstance(ruleset, list):
        return ruleset
    try:
        items = json.loads(ruleset or '{"nftables": []}')["nftables"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return []
    return items if isinstance(items, list) else []


def forward_tables(ruleset):
    """(family, table) of every table but ours with a base chain on the forward hook, from
    ``nft -j list chains`` (or any nft -j listing)."""
    out = []
    for item in items_of(ruleset):
        body = item.get("chain") if isinstance(item, dict) else None
        if isinstance(body, dict) and body.get("hook") == "forward" and \
                body.get("type") == "filter":
            key = (body.get("family"), body.get("table"))
            if key != foreign.OURS_TABLE and key not in out:
                out.append(key)
    return out


def chains_from_nft_json(ruleset):
    """``nft -j list ruleset`` (text, or its decoded list of items) -> [Chain] of the base
    chains on the forward hook, ours (``table inet ipmasq``) left out. The iptables-nft
    ``FORWARD`` chains are included with origin "iptables-nft" (``replace_iptables`` gives
    them their exact iptables rules)."""
    items = [item[next(iter(item))] for item in items_of(ruleset)
             if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in ("chain", "rule")
             and isinstance(item[next(iter(item))], dict)]
    bases = [body for body in items if body.get("hook") == "forward" and
             body.get("type") == "filter" and "chain" not in body and
             (body.get("family"), body.get("table")) != foreign.OURS_TABLE]
    tables = set((body.get("family"), body.get("table")) for body in bases)
    rules = {}
    for body in items:  # only the rules of tables with such a chain are read
        key = (body.get("family"), body.get("table"))
        if "chain" in body and "expr" in body and key in tables:
            family = {"ip": 4, "ip6": 6}.get(key[0])
            rules.setdefault(key, {}).setdefault(body.get("chain"), []).append(
                (foreign.parse_nft_json(body.get("expr"), family), _rule_text(body)))
    out = []
    for body in bases:
        key = (body.get("family"), body.get("table"))
        chains = rules.get(key, {})
        own = chains.get(body.get("name"), [])
        iptables_nft = key[0] in ("ip", "ip6") and key[1] == "filter" and \
            body.get("name") == "FORWARD"
        out.append(Chain(
            "table %s %s chain %s" % (key[0], key[1], body.get("name")),
            "iptables-nft" if iptables_nft else "nft", {"ip": 4, "ip6": 6}.get(key[0]),
            key[1], body.get("name"), body.get("policy", "accept"), own, chains,
            _manager(key[1], own)))
    return out


def _rule_text(body):
    """A rule of ``nft -j`` as a short text naming its chain: "filter_FWD_public: reject"."""
    words = []
    for stmt in body.get("expr") or ():
        if not isinstance(stmt, dict) or len(stmt) != 1:
            continue
        (key, value), = stmt.items()
        if key == "match" and isinstance(value, dict):
            left, right = value.get("left"), value.get("right")
            name = (left.get("meta") or left.get("ct") or {}).get("key") if \
                isinstance(left, dict) else None
            if isinstance(left, dict) and "payload" in left:
                name = "%s %s" % (left["payload"].get("protocol"), left["payload"].get("field"))
            words.append("%s %s%s" % (name or "match", "" if value.get("op") in ("==", "in")
                                      else value.get("op") + " ", json.dumps(right)))
        elif key in ("jump", "goto") and isinstance(value, dict):
            words.append("%s %s" % (key, value.get("target")))
        elif key == "xt" and isinstance(value, dict):
            words.append("xt %s %s" % (value.get("type"), value.get("name")))
        elif key != "counter":
            words.append(key)
    return "%s: %s" % (body.get("chain"), " ".join(words))[:200]


def chains_from_iptables_save(text, family, origin):
    """``iptables-save -t filter`` (one family) -> [Chain] for its FORWARD chain."""
    policy, chains, table = "accept", {}, None
    for raw in (text or "").split("\n"):
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        if table not in (None, "filter"):
            continue
        if line.startswith(":FORWARD "):
            policy = line.split()[1].lower()
        elif line.startswith("-A "):
            try:
                words = foreign.split_words(line)
                rule = foreign.parse_iptables(words[2:])
            except ValueError:
                rule = foreign.FRule(unknown=("unreadable",))
                words = line.split()
            chains.setdefault(words[1], []).append((rule, line))
    if "FORWARD" not in chains and policy == "accept":
        return []
    if origin == "iptables-legacy":
        where = "%s-legacy chain FORWARD" % ("ip6tables" if family == 6 else "iptables")
    else:
        where = "table %s filter chain FORWARD" % ("ip6" if family == 6 else "ip")
    own = chains.get("FORWARD", [])
    return [Chain(where, origin, family, "filter", "FORWARD", policy, own, chains,
                  _manager("filter", own))]


def replace_iptables(chains, exact):
    """``chains`` with the iptables-nft FORWARD chains replaced by ``exact`` (the same chains
    read from iptables-save, whose conntrack and other matches nft -j cannot show)."""
    families = set(c.family for c in exact)
    return [c for c in chains if not (c.origin == "iptables-nft" and c.family in families)] \
        + list(exact)


def may_drop(chain):
    """Whether a chain could drop anything at all (policy drop, or a drop or reject rule, in
    it or in a chain it reaches): the only chains worth reading exactly."""
    if chain.policy == "drop":
        return True
    return any(rule.verdict in ("drop", "reject") for rules in chain.chains.values()
               for rule, _text in rules) or any(
        rule.verdict in ("drop", "reject") for rule, _text in chain.rules)


# ---------------------------------------------------------------- our traffic

def _net(text):
    try:
        return ipaddress.ip_network(text, strict=False) if text else None
    except ValueError:
        return None


def route_interface(routes, net, default=False):
    """The interface of the most specific route that holds ``net`` (``ip -j route`` lists);
    the default route counts only with ``default``."""
    if net is None:
        return None
    best, best_len = None, -1
    for route in routes or ():
        dst = route.get("dst") if isinstance(route, dict) else None
        if dst == "default":
            if not default:
                continue
            target = ipaddress.ip_network("::/0" if net.version == 6 else "0.0.0.0/0")
        else:
            target = _net(dst)
        if target is None or target.version != net.version or not route.get("dev"):
            continue
        if net.subnet_of(target) and target.prefixlen > best_len:
            best, best_len = route["dev"], target.prefixlen
    return best


def _low_port(text):
    return int(str(text).split("-", 1)[0]) if text else None


def flows(ruleset, routes=None):
    """The traffic ``ruleset`` (the model, after the run) accepts, as Flows, both ways."""
    out, seen = [], set()

    def add(flow):
        key = flow[:-1]
        if key not in seen:
            seen.add(key)
            out.append(flow)

    for entry in tuple(ruleset.get("masquerade", ())) + tuple(ruleset.get("snat", ())):
        source = _net(entry.source)
        family = source.version if source else 4
        lan = route_interface(routes, source)
        add(Flow(family, lan, entry.out_interface, source, None, None, None, "new", False,
                 "new connections from %s out of %s" % (entry.source or "any source",
                                                        entry.out_interface)))
        add(Flow(family, entry.out_interface, lan, None, source, None, None, "established",
                 False, "their replies in from %s" % entry.out_interface))
    for pf in ruleset.get("port_forwards", ()):
        inside = _net(pf.to_address)
        lan = route_interface(routes, inside, default=True)
        source = _net(pf.source)
        port = _low_port(pf.to_port or pf.port)
        add(Flow(inside.version, pf.in_interface, lan, source, inside, pf.protocol, port, "new",
                 True, "port forward %s %s/%s to %s" % (pf.in_interface, pf.protocol, pf.port,
                                                        pf.to_address)))
        add(Flow(inside.version, lan, pf.in_interface, inside, source, pf.protocol, None,
                 "established", True, "its replies from %s" % pf.to_address))
    nat_flows = list(out)
    for rule in ruleset.get("forward", ()):
        if rule.action != "accept":
            continue
        states = set(rule.ct_state or ())
        if states and not states & {"new", "established", "related"}:
            continue
        state = "established" if states and "new" not in states else "new"
        source, dest = _net(rule.source), _net(rule.destination)
        family = (source or dest).version if (source or dest) else 4
        flow = Flow(family, rule.in_interface or route_interface(routes, source),
                    rule.out_interface or route_interface(routes, dest), source, dest,
                    rule.protocol, _low_port(rule.port), state, False,
                    "forward rule %s" % _forward_words(rule))
        # The role's forward rules are the general form of its NAT's flows: those say more
        # (the interfaces behind the networks), and a check of both would only repeat.
        if not any(_refines(nat, flow) for nat in nat_flows):
            add(flow)
    return out


def _refines(narrow, wide):
    """Whether every packet of flow ``narrow`` is one of flow ``wide``."""
    def within(small, big):
        return big is None or (small is not None and small.version == big.version
                               and small.subnet_of(big))
    return narrow.family == wide.family and narrow.state == wide.state and \
        wide.iif in (None, narrow.iif) and wide.oif in (None, narrow.oif) and \
        within(narrow.saddr, wide.saddr) and within(narrow.daddr, wide.daddr) and \
        wide.proto in (None, narrow.proto) and wide.dport in (None, narrow.dport)


def _forward_words(rule):
    words = []
    for field, word in (("in_interface", "in"), ("out_interface", "out"), ("source", "from"),
                        ("destination", "to"), ("protocol", "proto"), ("port", "port")):
        if getattr(rule, field):
            words.append("%s %s" % (word, getattr(rule, field)))
    if rule.ct_state:
        words.append("state %s" % ",".join(rule.ct_state))
    return "(%s)" % (", ".join(words) or "all")


# ---------------------------------------------------------------- walking a chain

def _iface(pattern, neg, name):
    if not pattern:
        return ALL
    if name is None:
        return SOME
    if pattern.endswith(("+", "*")):
        hit = name.startswith(pattern[:-1])
    else:
        hit = pattern == name
    return ALL if hit != neg else NONE


def _addresses(values, neg, net):
    if not values:
        return ALL
    nets = [_net(v) for v in values]
    if any(n is None for n in nets):
        return SOME
    if net is None:
        return ALL if not neg and any(n.prefixlen == 0 for n in nets) else SOME
    nets = [n for n in nets if n.version == net.version]
    if any(net.subnet_of(n) for n in nets):
        hit = ALL
    elif any(net.overlaps(n) for n in nets):
        hit = SOME
    else:
        hit = NONE
    return {ALL: NONE, NONE: ALL, SOME: SOME}[hit] if neg else hit


def _ports(values, neg, port):
    if not values:
        return ALL
    if port is None:
        return SOME
    hit = NONE
    for value in values:
        text = foreign.ports_text(value)
        if text is None:
            return SOME
        low, _sep, high = text.partition("-")
        if int(low) <= port <= int(high or low):
            hit = ALL
    return {ALL: NONE, NONE: ALL}[hit] if neg else hit


def match(rule, flow):
    """ALL when ``rule`` matches every packet of ``flow``, NONE when none, else SOME."""
    if rule.family and rule.family != flow.family:
        return NONE
    parts = [_iface(rule.iif, rule.iif_neg, flow.iif), _iface(rule.oif, rule.oif_neg, flow.oif),
             _addresses(rule.saddr, rule.saddr_neg, flow.saddr),
             _addresses(rule.daddr, rule.daddr_neg, flow.daddr),
             _ports(rule.dports, rule.dports_neg, flow.dport)]
    if rule.proto:
        hit = SOME if flow.proto is None else (ALL if rule.proto == flow.proto else NONE)
        parts.append({ALL: NONE, NONE: ALL, SOME: SOME}[hit] if rule.proto_neg else hit)
    if rule.ct_state:
        states = {flow.state} | ({"dnat"} if flow.dnat else set())
        hit = ALL if states & rule.ct_state else NONE
        parts.append({ALL: NONE, NONE: ALL}[hit] if rule.ct_state_neg else hit)
    if rule.ct_dnat:
        parts.append(ALL if flow.dnat else NONE)
    if rule.unknown:
        parts.append(SOME)
    if NONE in parts:
        return NONE
    return ALL if all(p == ALL for p in parts) else SOME


# A stand-in for our iptables jump: it accepts every flow of ours.
OUR_JUMP = (foreign.FRule(verdict="ours"), "-j IPMASQ-FORWARD (ours)")


def evaluate(rules, flow, chains, depth=0):
    """("accept" | "drop" | "return", rule text or None) for ``flow`` through ``rules``."""
    for rule, text in rules:
        hit = match(rule, flow)
        if hit == NONE:
            continue
        verdict = rule.verdict
        if verdict == "ours" or (verdict == "accept" and hit == ALL):
            return "accept", text
        if verdict in ("drop", "reject"):
            if hit == ALL:
                return "drop", text
            continue
        if verdict in ("jump", "goto") and depth < MAX_DEPTH and rule.target in chains:
            outcome = evaluate(chains[rule.target], flow, chains, depth + 1)
            if hit == ALL and outcome[0] in ("accept", "drop"):
                return outcome
            if hit == ALL and verdict == "goto":
                return "return", None
            continue
        if verdict == "return" and hit == ALL:
            return "return", text
    return "return", None


def with_our_jump(chain):
    """The iptables FORWARD chain as it will be once our jump is in: after the last jump to
    DOCKER-USER or ufw's chains, else first (see iptables._jump_position)."""
    rules = list(chain.rules)
    anchors = [i for i, (rule, _text) in enumerate(rules)
               if rule.verdict in ("jump", "goto") and rule.target in FORWARD_ANCHORS]
    position = anchors[-1] + 1 if anchors else 0
    return chain._replace(rules=rules[:position] + [OUR_JUMP] + rules[position:])


def findings(chains, our_flows, backend, our_origin=None):
    """[Finding] for every foreign chain that drops one of ``our_flows`` with ``backend``;
    ``our_origin``: where the iptables backend's FORWARD jump lives (iptables-nft or
    iptables-legacy)."""
    out = []
    for chain in chains:
        if backend == "iptables" and chain.origin == our_origin and chain.name == "FORWARD":
            chain = with_our_jump(chain)
        dropped, rule_text = [], None
        for flow in our_flows:
            if chain.family and chain.family != flow.family:
                continue
            outcome, text = evaluate(chain.rules, flow, chain.chains)
            if outcome == "drop" or (outcome == "return" and chain.policy == "drop"):
                dropped.append(flow)
                rule_text = rule_text or (text if outcome == "drop" else None)
        if dropped:
            out.append(Finding(chain, rule_text, dropped))
    return out


# ---------------------------------------------------------------- choosing and telling

def choose(requested, usable, holders, blocked, policy):
    """(backend, problem): the backend to use and, when it will not carry the traffic, the
    findings that say why (empty when it will).

    ``usable``: backends that work on the host, nftables first; ``holders``: backends that
    hold our rules; ``blocked``: {backend: findings}. auto keeps the backend that holds our
    rules while nothing blocks it there, else takes the first that nothing blocks. When all
    are blocked: with ``policy`` "warn" the first candidate, else none (None).
    """
    if requested != "auto":
        return requested, blocked.get(requested, [])
    order = [b for b in usable if b in holders] + [b for b in usable if b not in holders]
    for backend in order:
        if not blocked.get(backend):
            return backend, []
    if not order:
        return None, []
    first = order[0]
    return (first if policy == "warn" else None), blocked.get(first, [])


def _lan_hint(finding):
    for flow in finding.flows:
        if flow.state == "new" and not flow.dnat and flow.iif:
            return flow.iif, flow.oif
    for flow in finding.flows:
        if flow.oif and flow.iif:
            return flow.iif, flow.oif
    return "<LAN interface>", "<WAN interface>"


def ways_out(finding, iptables_helps):
    """The ways out for one finding, as text, for the chain's manager."""
    lan, wan = _lan_hint(finding)
    chain, out = finding.chain, []
    if iptables_helps:
        out.append("backend: iptables (or auto), whose jump decides inside that FORWARD chain, "
                   "after DOCKER-USER and ufw's chains")
    if chain.manager == "Docker":
        out.append("accept the traffic in DOCKER-USER: iptables -I DOCKER-USER -i %s -o %s -j "
                   "ACCEPT; iptables -I DOCKER-USER -o %s -m conntrack --ctstate "
                   "ESTABLISHED,RELATED,DNAT -j ACCEPT" % (lan, wan, lan))
    elif chain.manager == "ufw":
        out.append("ufw's DEFAULT_FORWARD_POLICY=\"ACCEPT\" in /etc/default/ufw (then ufw "
                   "reload), or ufw route allow in on %s out on %s" % (lan, wan))
    elif chain.manager == "firewalld":
        out.append("a firewalld policy that lets it through, e.g. firewall-cmd --permanent "
                   "--new-policy ipmasq-out; firewall-cmd --permanent --policy ipmasq-out "
                   "--add-ingress-zone <zone of %s> --add-egress-zone <zone of %s> "
                   "--set-target ACCEPT; firewall-cmd --reload" % (lan, wan))
    elif chain.origin == "iptables-legacy":
        out.append("iptables-legacy -P FORWARD ACCEPT, or an ACCEPT rule for it there")
    else:
        out.append("an accept rule for it in that chain, or its policy accept")
    out.append("foreign_forward_drop: warn to apply anyway")
    return out


def describe(found, backend, iptables_helps=False):
    """One message naming each chain, what drops there (its policy or a rule), the traffic
    of ours it drops, and the ways out."""
    parts = []
    for finding in found:
        chain = finding.chain
        how = "drops it by its policy (%s)" % chain.policy if finding.rule is None else \
            "drops it with the rule %s" % finding.rule
        owner = " (%s)" % chain.manager if chain.manager else ""
        parts.append("%s%s %s: %s. Ways out: %s" % (
            chain.where, owner, how, "; ".join(f.label for f in finding.flows),
            "; or ".join(ways_out(finding, iptables_helps and chain.name == "FORWARD"
                                  and chain.origin in ORIGINS))))
    return ("a foreign forward filter would drop traffic that our %s rules accept (each base "
            "chain on the forward hook gets a say): %s" % (backend, " | ".join(parts)))


def ours_in_iptables_nft(ruleset):
    """Whether ``nft -j list ruleset`` (text or items) shows our iptables chains (IPMASQ-*),
    which the iptables-nft backend keeps in the ip and ip6 tables."""
    items = items_of(ruleset)
    for item in items if isinstance(items, list) else ():
        chain = item.get("chain") if isinstance(item, dict) else None
        if isinstance(chain, dict) and chain.get("family") in ("ip", "ip6") and \
                foreign.OURS_CHAIN.match(str(chain.get("name", ""))):
            return True
    return False
