# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""Which backend a run uses on a host that is not empty, and what else it must do there.

A ``Site`` reads, through ``host.Host`` and only as far as a decision needs it, our rules in
both backends and the foreign filters on the forward hook. ``decide`` turns that into a
``Decision``: the backend, our rules there and in the other backend (a switch removes
those), and the foreign filters that would drop our traffic. The judgement itself is pure
(``neighbours.py``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import diff
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import neighbours
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import nft
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import rules

CODECS = {"nftables": nft, "iptables": iptables}
OTHER = {"nftables": "iptables", "iptables": "nftables"}

# backend; have: our State there; before: our ruleset as the run starts (from where our
# rules are); old: the other backend when it holds rules of ours (a switch removes them),
# old_have its State; problem: the message when a foreign filter drops our traffic
Decision = namedtuple("Decision", "backend have before old old_have problem")


class DecisionError(Exception):
    """No backend can carry the traffic, or the requested one cannot: nothing changed."""


class Site:
    """What a run knows about the host, read once and only when asked."""

    def __init__(self, host):
        self.host = host
        self._cache = {}

    def _once(self, key, read):
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]

    def nft_chains(self):
        """``nft -j list chains`` as its list of items (every chain with its hook and policy,
        no rules: small whatever the ruleset), or None where nft does not work."""
        def read():
            text = self.host.nft_list("chains")
            return None if text is None else neighbours.items_of(text)
        return self._once("nft_chains", read)

    def usable(self):
        """The backends that work here, nftables first."""
        out = ["nftables"] if self.nft_chains() is not None else []
        if self.host.has_iptables():
            out.append("iptables")
        return out

    def state(self, backend):
        """Our State in ``backend``."""
        if backend == "nftables" and self.nft_chains() is None:
            return nft.empty_state()
        return self._once(backend, lambda: self.host.read(backend))

    def holds(self, backend):
        """Whether ``backend`` holds rules of ours. iptables is read only when it was read
        already, or when nft cannot tell (no nft, legacy tables here) or shows our chains."""
        if backend == "nftables":
            return nft.has_rules(self.state("nftables"))
        if "iptables" in self._cache or self.host.legacy_families() or \
                self.nft_chains() is None or neighbours.ours_in_iptables_nft(self.nft_chains()):
            if "iptables" not in self._cache and not self.host.has_iptables():
                return False
            state = self.state("iptables")
            return any(state.present.values()) or any(
                n for jumps in state.jumps.values() for n in jumps.values())
        return False

    def forward_chains(self):
        """The foreign base chains on the forward hook with their rules: iptables-nft's
        FORWARD chains from iptables-save (nft -j cannot show their conntrack matches), other
        tables from nft, legacy FORWARD chains from iptables-legacy-save."""
        def read():
            if self.nft_chains() is None:
                # no nft here: the iptables tools are all there is
                origin = self.our_origin()
                return [chain for family in (4, 6) for chain in
                        neighbours.chains_from_iptables_save(
                            self.host.save_filter(family), family, origin)]
            chains = []
            for family, table in neighbours.forward_tables(self.nft_chains()):
                if family in ("ip", "ip6") and table == "filter":
                    number = 6 if family == "ip6" else 4
                    chains.extend(neighbours.chains_from_iptables_save(
                        self.host.save_filter(number, "nft"), number, "iptables-nft"))
                else:
                    chains.extend(neighbours.chains_from_nft_json(
                        self.host.nft_list("table", family, table)))
            for family in self.host.legacy_families():
                chains.extend(neighbours.chains_from_iptables_save(
                    self.host.save_filter(family, "legacy"), family, "iptables-legacy"))
            return chains
        return self._once("chains", read)

    def our_origin(self):
        """Where the iptables backend puts its FORWARD jump: iptables-nft or -legacy."""
        return self._once("origin", self.host.iptables_origin)

    def routes(self):
        return self._once("routes", self.host.routes)


def _before(site, backend, holders):
    """Our ruleset as the run starts: from ``backend`` when it holds rules, else from the
    backend that does."""
    for source in [backend] + [b for b in holders if b != backend]:
        if source in holders:
            return rules_of(source, site.state(source))
    return m.empty_ruleset()


def rules_of(backend, state):
    return rules.from_rules(*CODECS[backend].to_rules(state))[0]


def decide(site, requested, state_name, config, policy, warn):
    """The Decision for a changing run; raises DecisionError (nothing changed). ``warn``
    takes the message when ``policy`` is "warn" and a foreign filter drops our traffic."""
    usable = site.usable()
    if not usable:
        raise DecisionError("neither nft nor iptables-restore works on this host")
    if requested != "auto" and requested not in usable:
        usable = usable + [requested]  # its own tools will say what is missing
    if requested != "auto":
        site.state(requested)  # read in any case: the run changes it
    holders = [b for b in ("nftables", "iptables") if b in usable and site.holds(b)]
    first = requested if requested != "auto" else (holders or usable)[0]
    before = _before(site, first, holders)
    after = diff.after_state(state_name, before, config)
    # A deletion takes accepts away and adds none: nothing it leaves was not there before.
    chains = site.forward_chains() if not m.is_empty(after) and state_name != "deleted" \
        else []
    blocked = {}
    if any(neighbours.may_drop(c) for c in chains):
        flows = neighbours.flows(after, site.routes())
        candidates = [requested] if requested != "auto" else usable
        for backend in candidates:
            origin = site.our_origin() if backend == "iptables" else None
            blocked[backend] = neighbours.findings(chains, flows, backend, origin)
    backend, found = neighbours.choose(requested, usable, holders, blocked, policy)
    if backend is None:
        raise DecisionError("nothing was changed: no backend would carry the traffic on this "
                            "host. %s" % neighbours.describe(found, "nftables", True))
    problem = None
    if found:
        problem = neighbours.describe(found, backend, backend == "nftables" and
                                      "iptables" in usable and not blocked.get("iptables"))
        if policy != "warn":
            raise DecisionError("nothing was changed: %s" % problem)
        warn(problem)
    if backend != first:
        before = _before(site, backend, holders)
    old = OTHER[backend] if OTHER[backend] in holders else None
    return Decision(backend, site.state(backend), before, old,
                    site.state(old) if old else None, problem)


def resolve(site, requested):
    """The backend a reading run (gathered) uses: the one holding our rules, else the first
    that works."""
    if requested != "auto":
        return requested
    usable = site.usable()
    holders = [b for b in usable if site.holds(b)]
    return (holders or usable or ["iptables"])[0]
