# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""What nat_status reports, from what the host printed (pure: host.py reads, this decides).

- Counters: the packet and byte counters of our rules and map elements, read from the same
  dump as the rules (``nft -j`` or ``iptables-save -c``), summed per model entry and keyed
  like ``gathered``. A NAT rule sees only the first packet of each connection (later
  packets follow the connection's conntrack entry), so for masquerade, SNAT and port
  forwards ``packets`` counts the connections they translated; forward rules count every
  packet they matched.
- Connection tracking: how full the table is, and the LAN addresses that hold the most
  tracked connections (by the original source of each connection).
- Drift: whether our live rules equal what the boot files would load (counters and the
  addresses in the hairpin sets aside: those change by themselves).
- Findings: what needs a look, as warnings and notes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import ipaddress
import json
import re

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import kernel
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import nft
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import rules as r

CODECS = {"nftables": nft, "iptables": iptables}
CONNTRACK_THRESHOLD = 80  # percent of nf_conntrack_max
DRIFT_LINES_MAX = 50  # changes shown; the count says how many there are


class StatusError(ValueError):
    """A dump that does not fit its own rules (the counters cannot be placed)."""


# ---------------------------------------------------------------- counters in the dumps

def _pair(counter):
    """``{"packets": N, "bytes": M}`` -> (N, M); None when the statement holds no values."""
    if not isinstance(counter, dict):
        return None
    return int(counter.get("packets") or 0), int(counter.get("bytes") or 0)


def nft_counters(text):
    """``nft -j list table inet ipmasq`` -> (rule counters, element counters).

    Rule counters: {chain: [(packets, bytes) or None]}, one item per rule of our table in the
    order the dump lists them, which is the order ``nft.parse_json`` reads them in (None for
    a rule without a counter). Element counters: {(family, (iif, proto, port)): (packets,
    bytes)} for the elements of our forward maps.
    """
    try:
        items = json.loads(text)["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise r.ParseError("not nft -j output: %s" % str(exc)[:200])
    chains, elements = {}, {}
    for item in items:
        (kind, body), = item.items()
        if kind == "metainfo" or body.get("family") != "inet" or \
                body.get("table", body.get("name")) != "ipmasq":
            continue
        if kind == "rule":
            counts = [_pair(x["counter"]) for x in body.get("expr") or () if "counter" in x]
            chains.setdefault(body["chain"], []).append(counts[0] if counts else None)
        elif kind == "map" and body["name"] in nft.MAPS:
            family = 6 if nft.MAPS[body["name"]][0] == "ip6" else 4
            for key, _value in body.get("elem") or ():
                elem = key.get("elem")
                if elem is None or "counter" not in elem:
                    continue
                iif, proto, port = elem["val"]["concat"]
                elements[(family, (iif, proto, str(port)))] = _pair(elem["counter"])
    return chains, elements


_SAVE_COUNTERS = re.compile(r"^\[([0-9]+):([0-9]+)\] +-A +(\S+) ")


def iptables_counters(text):
    """``iptables-save -c`` of one family -> {chain: [(packets, bytes)]}: one item per rule
    of our chains, in the order ``iptables.parse_save`` reads them."""
    names = dict((name, chain) for chain, (_table, name, _builtin) in iptables.CHAINS.items())
    out = {}
    for line in text.split("\n"):
        match = _SAVE_COUNTERS.match(line.strip(" \t\r"))
        if match and match.group(3) in names:
            out.setdefault(names[match.group(3)], []).append(
                (int(match.group(1)), int(match.group(2))))
    return out


def _place(chain_rules, chain_counts, where):
    """Pair each rule with its counters; the dump and the parse must agree rule for rule."""
    out = {}
    for chain, rules_of_chain in chain_rules.items():
        counts = chain_counts.get(chain, [])
        if len(counts) != len(rules_of_chain):
            raise StatusError("%s: %d rules in chain %s but %d counters"
                              % (where, len(rules_of_chain), chain, len(counts)))
        for rule, count in zip(rules_of_chain, counts):
            if count is None or rule in out and out[rule] is None:
                out[rule] = None
            else:
                old = out.get(rule, (0, 0))
                out[rule] = (old[0] + count[0], old[1] + count[1])
    return out


def rule_counters(backend, state, dump):
    """(counters by Rule, counters by lookup key) for a State parsed from ``dump``.

    ``dump`` is what host.dump gives: {"nft": text} or {4: text, 6: text}. A Rule that
    occurs more than once (iptables: a rule without addresses in both families) sums its
    counters; None means "not counted" (a table from before counters).
    """
    if backend == "nftables":
        chain_counts, elements = nft_counters(dump["nft"])
        return _place(state.chains, chain_counts, "nft"), elements
    out = {}
    for family in iptables.FAMILIES:
        placed = _place(state.chains[family], iptables_counters(dump.get(family) or ""),
                        "ip%stables-save" % ("6" if family == 6 else ""))
        for rule, count in placed.items():
            old = out.get(rule, (0, 0))
            out[rule] = None if count is None or old is None else \
                (old[0] + count[0], old[1] + count[1])
    return out, {}


def _counted_rules(chains):
    """The rules that count for an entry: not the accept that every port forward shares,
    and not a hairpin's way back (it counts the same connections as the hairpin DNAT)."""
    return [x for chain in r.CHAINS for x in chains.get(chain, ())
            if x != r.DNAT_ACCEPT and not (x.verdict == "masquerade" and x.ct_dnat)]


def entry_counters(backend, ruleset, by_rule, by_key):
    """{kind: [identity of the entry + packets + bytes]}: each entry's rules, summed.

    An entry's rules are what ``rules.to_rules`` makes of it alone, so every kind, the new
    ones too, is counted the way it is rendered. packets/bytes are None when a rule of the
    entry is not counted or not found.
    """
    codec = CODECS[backend]
    out = {}
    for kind in m.KINDS:
        rows = []
        for entry in ruleset.get(kind, ()):
            lookup = r.lookup_entry(entry) if kind == "port_forwards" and codec.LOOKUPS \
                and not entry.hairpin else None
            if lookup is not None:  # the common case at scale: one map element, no rule
                counts = [by_key.get((m.family_of(entry.to_address), lookup[0]))]
            else:
                chains, lookups = r.to_rules({kind: (entry,)}, lookups=codec.LOOKUPS)
                counts = [by_rule.get(x) for x in _counted_rules(chains)]
                counts += [by_key.get((family, key)) for family in sorted(lookups)
                           for key in lookups[family]]
            row = identity_of(kind, m.entry_to_dict(kind, entry))
            if counts and all(c is not None for c in counts):
                row.update(packets=sum(c[0] for c in counts), bytes=sum(c[1] for c in counts))
            else:
                row.update(packets=None, bytes=None)
            rows.append(row)
        out[kind] = rows
    return out


def identity_of(kind, row):
    """The identity fields of a counters row (as ``model.identity`` keys entries)."""
    fields = {"masquerade": ("source", "out_interface"), "snat": ("source", "out_interface"),
              "port_forwards": ("in_interface", "protocol", "port"),
              "helpers": ("helper", "protocol", "port")}.get(kind)
    if fields is None:  # forward, and kinds to come: the whole entry but its comment
        fields = sorted(k for k in row if k not in ("comment", "packets", "bytes"))
    return dict((k, row[k]) for k in fields if row.get(k) is not None)


def unused_forwards(counters):
    """How many port forwards count zero: no connection since they were loaded. (Which ones:
    the rows of ``counters`` with packets 0; a list here would double a large result.)"""
    return sum(1 for row in counters.get("port_forwards", ()) if row["packets"] == 0)


# ---------------------------------------------------------------- connection tracking

def lan_networks(ruleset):
    """The LAN: the sources that our masquerade and SNAT entries translate (none: any)."""
    return sorted(set(e.source for kind in ("masquerade", "snat")
                      for e in ruleset.get(kind, ()) if e.source),
                  key=lambda n: (m.family_of(n), n))


def conntrack_sources(text):
    """``conntrack -L -o extended`` or /proc/net/nf_conntrack (or plain ``conntrack -L``)
    -> Counter of (original source text, protocol)."""
    out = collections.Counter()
    for line in text.split("\n"):
        words = line.split(None, 12)
        if words[:1] in (["ipv4"], ["ipv6"]):
            words = words[2:]
        if len(words) < 4:
            continue
        for word in words[2:]:
            if word.startswith("src="):
                out[(word[4:], words[0])] += 1
                break
    return out


def top_sources(sources, networks, top):
    """The ``top`` source addresses inside ``networks`` (CIDR texts; empty: any) by tracked
    connections: [{address, connections, protocols: {protocol: connections}}]."""
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    per_address, known = {}, {}
    for (text, proto), count in sources.items():
        if text not in known:  # one address, many lines: decide once
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                address = None
            if address is not None and nets and not any(
                    address.version == n.version and address in n for n in nets):
                address = None
            known[text] = str(address) if address is not None else None
        address = known[text]
        if address is None:
            continue
        protocols = per_address.setdefault(address, collections.Counter())
        protocols[proto] += count
    rows = [{"address": a, "connections": sum(p.values()), "protocols": dict(sorted(p.items()))}
            for a, p in per_address.items()]
    rows.sort(key=lambda row: (-row["connections"], row["address"]))
    return rows[:top]


def conntrack_usage(count, limit, threshold):
    """{count, max, used_percent, threshold_percent}; the figures None when unknown (no
    connection tracking loaded)."""
    used = round(100.0 * count / limit, 2) if count is not None and limit else None
    return {"count": count, "max": limit, "used_percent": used, "threshold_percent": threshold}


# ---------------------------------------------------------------- drift

def boot_state(backend, files):
    """The State the boot unit would load from ``files`` ({key: text or None}, keys as
    ``host.persist_files`` names them): (State, None) or (None, why not)."""
    missing = sorted(k for k, text in files.items() if text is None)
    if backend == "nftables":
        keys, need = ["nft"], ["nft"]
    else:
        keys, need = ["ipv4", "ipv6", "ipset", "nfct"], ["ipv4", "ipv6"]
    if all(files.get(k) is None for k in need):
        return None, "no boot file"
    if any(files.get(k) is None for k in need):
        return None, "boot file missing: %s" % ", ".join(k for k in need if k in missing)
    texts = [files[k] for k in keys if files.get(k) is not None]
    cut = [k for k in keys if files.get(k) is not None
           and files[k].rstrip("\n").rsplit("\n", 1)[-1] != kernel.END_MARKER]
    if cut:
        return None, ("boot file %s has no end marker: the boot unit would not load it"
                      % ", ".join(cut))
    if files.get("nfct") is not None:  # the file has no header line: parse needs one
        texts[texts.index(files["nfct"])] = iptables.NFCT_PARTS["nfct"] + "\n" + files["nfct"]
    try:
        return CODECS[backend].parse("".join(texts)), None
    except (r.ParseError, ValueError) as exc:
        return None, "boot file cannot be read: %s" % exc


def _shown(codec, rule):
    try:
        return codec.rule_text(rule)
    except r.RenderError:
        return "(a rule that cannot be shown: %s)" % m.echo(tuple(rule))


def _same_rules(backend, live, boot):
    fields = ("chains", "elements", "objects") if backend == "nftables" else \
        ("chains", "jumps", "present")
    return all(getattr(live, f) == getattr(boot, f) for f in fields)


def rule_lines(backend, state, other=None):
    """Our rules as lines that compare: rules in chain order, the rest sorted. The
    addresses in the hairpin sets and the counters are left out: they change on their own.
    With ``other`` (a State), only the map elements that differ from its are listed."""
    codec = CODECS[backend]
    if backend == "nftables":
        lines = ["%s: %s" % (c, _shown(nft, x)) for c in r.CHAINS for x in state.chains.get(c, ())]
        for name in sorted(nft.MAPS):
            mine = state.elements.get(name, {})
            theirs = other.elements.get(name, {}) if other is not None else {}
            differ = dict((k, v) for k, v in mine.items() if other is None or theirs.get(k) != v)
            lines += sorted("%s element: %s" % (name, _shown(nft, x))
                            for x in r.lookup_rules({0: differ}))
        lines += sorted("%s %s" % kind_name for kind_name in state.objects)
        return lines
    lines = []
    for family in iptables.FAMILIES:
        for chain, (_table, name, builtin) in iptables.CHAINS.items():
            tag = "ipv%d %s" % (family, name)
            lines += ["%s: %s" % (tag, _shown(codec, x)) for x in state.chains[family][chain]]
            lines += ["%s: jump from %s" % (tag, builtin)] * state.jumps[family][chain]
            if chain in state.present[family]:
                lines.append("%s: chain" % tag)
    return lines


def drift(backend, live, boot, why_no_boot=None):
    """{differs, reason, changes}: whether ``live`` (a State) holds other rules than ``boot``
    (a State, or None with ``why_no_boot``). ``changes``: "- line" only in the boot files,
    "+ line" only live."""
    if boot is None:
        if not holds_rules(backend, live) and why_no_boot == "no boot file":
            return {"differs": False, "reason": "no rules and no boot file", "changes": []}
        return {"differs": None if why_no_boot == "no boot file" else True,
                "reason": why_no_boot, "changes": []}
    live_lines, boot_lines = [], []
    if not _same_rules(backend, live, boot):  # lines only where something differs
        live_lines, boot_lines = rule_lines(backend, live, boot), rule_lines(backend, boot, live)
    if live_lines == boot_lines:
        return {"differs": False, "reason": "the live rules are the boot file's", "changes": []}
    old, new = collections.Counter(boot_lines), collections.Counter(live_lines)
    changes = ["- " + x for x in _surplus(boot_lines, old - new)] + \
        ["+ " + x for x in _surplus(live_lines, new - old)]
    if not changes:
        changes = ["~ the same rules in another order"]
    reason = "the live rules differ from the boot file (%d line%s)" % (
        len(changes), "" if len(changes) == 1 else "s")
    if len(changes) > DRIFT_LINES_MAX:
        changes = changes[:DRIFT_LINES_MAX] + ["... and %d more" % (len(changes) - DRIFT_LINES_MAX)]
    return {"differs": True, "reason": reason, "changes": changes}


def _surplus(lines, surplus):
    """The lines that ``surplus`` (a Counter) counts, in the order of ``lines``."""
    left, out = collections.Counter(surplus), []
    for line in lines:
        if left[line] > 0:
            out.append(line)
            left[line] -= 1
    return out


# ---------------------------------------------------------------- rollbacks and findings

def rollback_rows(rollbacks, now):
    """host.rollbacks() -> [{token, status, seconds_left, detail}]."""
    rows = []
    for token, deadline, outcome in rollbacks:
        if outcome is None:
            rows.append({"token": token, "status": "pending",
                         "seconds_left": max(0, int(round(deadline - now))), "detail": None})
        else:
            failed = outcome != "restored"
            rows.append({"token": token, "status": "failed" if failed else "restored",
                         "seconds_left": 0,
                         "detail": outcome[len("failed: "):] if outcome.startswith("failed: ")
                         else (outcome if failed else None)})
    return rows


def _finding(severity, topic, message):
    return {"severity": severity, "topic": topic, "message": message}


def findings(result):
    """What needs a look: warnings (returned as Ansible warnings too) and notes."""
    out = []
    conntrack = result["conntrack"]
    used, threshold = conntrack["used_percent"], conntrack["threshold_percent"]
    if used is None:
        out.append(_finding("info", "conntrack", "connection tracking is not loaded: no "
                            "connection is tracked, so none is translated either"))
    elif used >= threshold:
        out.append(_finding("warning", "conntrack", (
            "the connection tracking table is %s%% full (%d of %d, threshold %s%%): when it "
            "is full the kernel drops new connections (nf_conntrack: table full)"
            % (format_number(used), conntrack["count"], conntrack["max"], format_number(threshold)))))
    for row in result["rollbacks"]:
        if row["status"] == "pending":
            out.append(_finding("warning", "rollback", (
                "a change made with rollback_timeout is waiting for confirmation (token %s): "
                "its rollback fires in %ds unless it is confirmed" % (row["token"],
                                                                      row["seconds_left"]))))
        elif row["status"] == "failed":
            out.append(_finding("warning", "rollback", (
                "the rollback of %s FAILED (%s): the host still runs the unconfirmed change"
                % (row["token"], row["detail"]))))
        else:
            out.append(_finding("info", "rollback", "the rollback of %s restored the previous "
                                "rules" % row["token"]))
    state = result["drift"]
    if state["differs"]:
        out.append(_finding("warning", "drift", "%s: %s" % (state["reason"], "; ".join(
            state["changes"][:5]) + ("; ..." if len(state["changes"]) > 5 else ""))))
    elif state["differs"] is None:
        out.append(_finding("info", "drift", "%s: these rules are not restored at boot "
                            "(persist: false?)" % state["reason"]))
    foreign = result.get("foreign_rules")
    if foreign:
        out.append(_finding("warning", "rules", (
            "%d rule%s in our table or chains that the collection did not write (a hand "
            "edit?): the next nat_rules run removes %s" % (
                foreign, "" if foreign == 1 else "s", "it" if foreign == 1 else "them"))))
    if any(row["packets"] is None for rows in result["counters"].values() for row in rows):
        out.append(_finding("info", "counters", "some rules carry no counters (rules loaded "
                            "by an older version): the next nat_rules run adds them"))
    unused = result["unused_port_forwards"]
    if unused:
        out.append(_finding("info", "counters", "%d port forward%s had no connection since "
                            "%s loaded" % (unused, "" if unused == 1 else "s",
                                           "it was" if unused == 1 else "they were")))
    return out


def rule_counts(ruleset):
    """{kind: entries, total}: the size of the owned ruleset (tcp_udp counts as two)."""
    out = dict((kind, len(ruleset.get(kind, ()))) for kind in m.KINDS)
    out["total"] = sum(out.values())
    return out


def format_number(value):
    """12.5 -> "12.5", 80.0 -> "80"."""
    return ("%.2f" % value).rstrip("0").rstrip(".")


# ---------------------------------------------------------------- the whole report

def dump_state(backend, dump):
    """host.dump output -> the backend State (the rules, without their counters)."""
    if backend == "nftables":
        return nft.parse_json(dump["nft"])
    timeouts = iptables.parse_nfct(dump.get("nfct") or "")
    return iptables.combine(iptables.parse_save(dump.get(4) or "", 4, timeouts=timeouts),
                            iptables.parse_save(dump.get(6) or "", 6, timeouts=timeouts))


def holds_rules(backend, state):
    """Whether a State shows our table, or any of our chains or jumps."""
    if backend == "nftables":
        return state.present
    return any(state.present.values()) or any(
        n for jumps in state.jumps.values() for n in jumps.values())


def report(backend, state, dump, boot_files, readings, options):
    """The nat_status result (without ``prometheus``).

    ``boot_files``: {key: (path, text or None)} as host.boot_files gives them.
    ``readings``: rollbacks (host.rollbacks()), now (time), conntrack_count,
    conntrack_max (None when unknown) and conntrack_table (text, or None when not read).
    ``options``: top, lan_networks (None: from the ruleset), conntrack_threshold.
    """
    codec = CODECS[backend]
    ruleset, foreign = r.from_rules(*codec.to_rules(state))
    by_rule, by_key = rule_counters(backend, state, dump)
    counters = entry_counters(backend, ruleset, by_rule, by_key)
    networks = options["lan_networks"]
    if networks is None:
        networks = lan_networks(ruleset)
    table = readings["conntrack_table"]
    top = top_sources(conntrack_sources(table), networks, options["top"]) \
        if table is not None and options["top"] else []
    boot, why = boot_state(backend, dict((k, text) for k, (_path, text) in boot_files.items()))
    result = {
        "backend": backend,
        "rules": rule_counts(ruleset),
        "foreign_rules": len(foreign),
        "conntrack": dict(conntrack_usage(readings["conntrack_count"],
                                          readings["conntrack_max"],
                                          options["conntrack_threshold"]),
                          lan_networks=list(networks), table_read=table is not None),
        "top_sources": top,
        "counters": counters,
        "unused_port_forwards": unused_forwards(counters),
        "rollbacks": rollback_rows(readings["rollbacks"], readings["now"]),
        "drift": dict(drift(backend, state, boot, why), boot_files=sorted(
            path for path, text in boot_files.values() if text is not None)),
    }
    result["findings"] = findings(result)
    if options["top"] and table is None and result["conntrack"]["count"] is not None:
        result["findings"].append(_finding(
            "info", "conntrack", "neither the conntrack command nor /proc/net/nf_conntrack is "
            "there: the top sources cannot be read (Debian/Ubuntu package conntrack)"))
    return result
