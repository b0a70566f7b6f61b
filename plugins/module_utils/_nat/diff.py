# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""Wanted rules + current rules + state -> the rules we want afterwards (pure).

Keyed kinds are compared by identity (see ``model.identity``), never by list position.
``forward`` is ordered: merged appends the rules that are missing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m


def _keyed(kind, entries):
    return dict((m.identity(kind, e), e) for e in entries)


def _merge(kind, have, want):
    if kind in m.KEYED_KINDS:
        merged = _keyed(kind, have)
        merged.update(_keyed(kind, want))
        return m.canonical(kind, merged.values())
    wanted = _keyed(kind, want)
    out = [wanted.pop(m.identity(kind, e), e) for e in have]
    return m.canonical(kind, out + [e for e in want if m.identity(kind, e) in wanted])


def _delete(kind, have, want):
    gone = set(m.identity(kind, e) for e in want)
    return tuple(e for e in have if m.identity(kind, e) not in gone)


def after_state(state, have, want):
    """The whole owned ruleset after ``state`` (merged, replaced, overridden, deleted).

    ``want`` names only the kinds the user gave; for deleted, a kind given as an empty list
    (or no config at all) removes every rule of that kind.
    """
    after = dict((k, tuple(have.get(k, ()))) for k in m.KINDS)
    if state == "overridden":
        after = m.empty_ruleset()
        after.update(want)
    elif state == "replaced":
        after.update(want)
    elif state == "merged":
        for kind, entries in want.items():
            after[kind] = _merge(kind, after[kind], entries)
    elif state == "deleted":
        if not want:
            return m.empty_ruleset()
        for kind, entries in want.items():
            after[kind] = _delete(kind, after[kind], entries) if entries else ()
    else:
        raise ValueError("not a changing state: %s" % state)
    return after


def summary(before, after):
    """Counts per kind: {kind: {added, removed, unchanged}}, by identity and content."""
    out = {}
    for kind in m.KINDS:
        old, new = set(before.get(kind, ())), set(after.get(kind, ()))
        out[kind] = {"added": len(new - old), "removed": len(old - new),
                     "unchanged": len(old & new)}
    return out


CONNTRACK_RANGE_MAX = 256  # ports of one range forward cleaned one by one


def _changed(kind, before, after):
    """Entries of ``before`` that ``after`` removed or changed (by identity)."""
    new = _keyed(kind, after.get(kind, ()))
    return [e for e in before.get(kind, ()) if new.get(m.identity(kind, e)) != e]


def conntrack_filters(before, after):
    """``conntrack -D`` arguments for the flows that stale rules created, and only those."""
    out = []
    for pf in _changed("port_forwards", before, after):
        family = "ipv6" if ":" in (pf.to_address or "") else "ipv4"
        lo, hi = m.parse_ports(pf.port)
        for port in range(lo, min(hi, lo + CONNTRACK_RANGE_MAX - 1) + 1):
            out.append(["-f", family, "-p", pf.protocol, "--orig-port-dst", str(port),
                        "--dst-nat"])
    for kind in ("masquerade", "snat"):
        for e in _changed(kind, before, after):
            if e.source is None:
                continue  # no way to tell its flows from anyone else's NAT
            net = ipaddress.ip_network(e.source)
            out.append(["-f", "ipv%d" % net.version, "--src-nat", "-s", str(net.network_address),
                        "--mask-src", str(net.netmask)])
    return out
