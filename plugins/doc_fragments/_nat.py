# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by everything that talks to a gateway's ruleset.
    DOCUMENTATION = r"""
options:
  backend:
    description:
      - Which packet filter holds the rules.
      - V(auto) keeps the backend that holds our rules on the host; on a host without our
        rules it uses nftables when the C(nft) command works there, iptables otherwise. With
        M(ipmasq.gateway.nat_rules), a backend whose rules a foreign forward filter would
        drop is passed over (see O(ipmasq.gateway.nat_rules#module:foreign_forward_drop)).
        With O(state=rendered) it means V(nftables).
      - When the host holds our rules in the other backend, the run that applies this one
        removes them there (ours only), after the new rules are in.
      - V(nftables) keeps everything in C(table inet ipmasq). V(iptables) uses the chains
        C(IPMASQ-PREROUTING), C(IPMASQ-POSTROUTING) (nat), C(IPMASQ-FORWARD) (filter) and
        C(IPMASQ-HELPERS) (raw), each reached by one jump from its built-in chain, for
        IPv4 (iptables) and IPv6 (ip6tables).
    type: str
    choices: [auto, nftables, iptables]
    default: auto
  persist:
    description:
      - Write the whole owned ruleset to C(/etc/ipmasq/ipmasq.nft) (nftables) or
        C(/etc/ipmasq/ipmasq.v4) and C(/etc/ipmasq/ipmasq.v6) (iptables), where the
        C(ipmasq.service) unit of the P(ipmasq.gateway.gateway#role) role restores it at boot.
        With iptables and hairpin forwards, C(/etc/ipmasq/ipmasq.ipset) holds their address
        sets, for C(ipset -exist restore) before C(iptables-restore). With iptables and
        per-rule timeouts, C(/etc/ipmasq/ipmasq.nfct) holds the C(nfct) commands that make
        their timeout objects, one a line, run before C(iptables-restore).
      - The hairpin address sets are written with the addresses of the last run; the
        C(ipmasq-refresh) script brings them up to date after boot.
      - The files change only when their content does; a changed file counts as a change.
    type: bool
    default: true
"""
