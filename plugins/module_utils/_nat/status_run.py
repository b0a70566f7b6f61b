# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""What nat_status does: read the host, then report (status.py decides everything).

Nothing on the host changes. The host lock is held only while the rules, the boot files
and the pending rollbacks are read, so that they are seen as one run of nat_rules left
them; the connection tracking table is read after it is released.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import time

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import rules
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import status
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import status_format
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat.host import Host, HostError

LOCK_WAIT = 10  # seconds; a longer nat_rules run is read without the lock (and said so)


def _options(params):
    """The module's options checked: (options, error message or None)."""
    threshold = params["conntrack_threshold"]
    if not 0 < threshold <= 100:
        return None, "conntrack_threshold: must be a percentage above 0, at most 100 (got %s)" \
            % m.echo(threshold)
    if params["top"] < 0:
        return None, "top: must be 0 (do not read the connection table) or more (got %d)" \
            % params["top"]
    networks = list(params["lan_networks"]) if params["lan_networks"] is not None else None
    if networks is not None:
        for index, text in enumerate(networks):
            try:
                if "%" in text:
                    raise ValueError("a zone id is not allowed")
                networks[index] = ipaddress.ip_network(text, strict=False).with_prefixlen
            except ValueError as exc:
                return None, "lan_networks[%d]: not a network (%s): %s" % (index, exc, m.echo(text))
    return {"top": params["top"], "lan_networks": networks,
            "conntrack_threshold": threshold}, None


def _read_rules(host, requested):
    """(backend, dump, State). With ``auto``: the backend that holds our rules (our table,
    else our chains), else the one nat_rules would pick."""
    candidates = [requested] if requested != "auto" else ["nftables", "iptables"]
    for backend in candidates:
        dump = host.dump(backend)
        if dump is None:
            if requested != "auto":
                raise HostError("backend %s: its tools are not installed" % backend)
            continue
        state = status.dump_state(backend, dump)
        if requested != "auto" or status.holds_rules(backend, state):
            return backend, dump, state
    backend = host.resolve_backend("auto")
    dump = host.dump(backend)
    if dump is None:
        raise HostError("neither nft nor iptables-save is installed")
    return backend, dump, status.dump_state(backend, dump)


def run(module):
    options, error = _options(module.params)
    if error:
        return {"failed": True, "changed": False, "msg": error}
    host = Host(module)
    notes = []
    try:
        try:
            lock = host.lock(timeout=LOCK_WAIT)
        except HostError as exc:
            lock = None
            notes.append(("info", "lock", "%s: read without it, so a change in progress may "
                          "show as drift" % exc))
        try:
            backend, dump, state = _read_rules(host, module.params["backend"])
            boot_files = host.boot_files(backend)
            rollbacks = host.rollbacks()
        finally:
            if lock is not None:
                lock.close()
        count, limit = host.conntrack_figures()
        readings = {"rollbacks": rollbacks, "now": time.time(), "conntrack_count": count,
                    "conntrack_max": limit,
                    "conntrack_table": host.conntrack_table() if options["top"] else None}
        result = status.report(backend, state, dump, boot_files, readings, options)
    except (HostError, rules.ParseError, status.StatusError) as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
    result["findings"] += [{"severity": s, "topic": t, "message": text} for s, t, text in notes]
    for finding in result["findings"]:
        if finding["severity"] == "warning":
            module.warn(finding["message"])
    if module.params["prometheus"]:
        result["prometheus"] = status_format.prometheus_text(result)
    result["changed"] = False
    return result
