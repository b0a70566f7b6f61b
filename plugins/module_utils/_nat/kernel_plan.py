# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""What nat_kernel does: compare the live sysctls, the sysctl.d file and the boot unit
with what is wanted, and set what differs (live and persisted state, one loop each)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import kernel
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import refresh
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import role_vars
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat.host import Host, HostError


def _check(params):
    """Errors that name the option and value, before anything is read or changed."""
    timeouts = params["conntrack_timeouts"] or {}
    for key, seconds in sorted(timeouts.items(), key=str):
        if key not in role_vars.CONNTRACK_TIMEOUTS:
            return "conntrack_timeouts.%s: not a timeout (known: %s)" % (
                key, ", ".join(sorted(role_vars.CONNTRACK_TIMEOUTS)))
        if isinstance(seconds, bool) or not str(seconds).isdigit() or int(seconds) <= 0:
            return "conntrack_timeouts.%s: must be a positive number of seconds (got %r)" % (
                key, seconds)
    if params["conntrack_max"] is not None and params["conntrack_max"] <= 0:
        return "conntrack_max: must be a positive number (got %d)" % params["conntrack_max"]
    boot = params["boot_unit"]
    if boot:
        wanted = ("nft",) if boot["backend"] == "nftables" else ("ipv4", "ipv6")
        given = sorted(set(boot["files"] or {}) - {"ipset"} if boot["backend"] == "iptables"
                       else boot["files"] or {})
        if given != sorted(wanted):
            return ("boot_unit.files: the %s backend needs %s (got %r); pass the persist_files "
                    "that nat_rules returned"
                    % (boot["backend"], " and ".join(wanted), boot["files"]))
    return None


def run(module):
    p = module.params
    problem = _check(p)
    if problem:
        return {"failed": True, "changed": False, "msg": problem}
    host = Host(module)
    try:
        return _run(module, host, p)
    except HostError as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}


def _run(module, host, p):
    timeouts = dict((k, int(v)) for k, v in (p["conntrack_timeouts"] or {}).items())
    wanted = kernel.wanted_sysctls(
        {"conntrack_max": p["conntrack_max"], "conntrack_timeouts": timeouts,
         "ipv6_forwarding": p["ipv6_forwarding"]}, role_vars.CONNTRACK_TIMEOUTS)
    result = {"changed": False, "sysctl": {}, "files": [], "unit": {}, "changes": []}
    diff = {"before": "", "after": ""}

    # The files first: the live values then match what boot restores.
    files = {kernel.SYSCTL_FILE[p["persist"]]: (kernel.sysctl_file(wanted), 0o644)}
    stale = kernel.SYSCTL_FILE[not p["persist"]]
    boot = p["boot_unit"] if p["persist"] else None
    if boot:
        bins = host.tool_paths(kernel.unit_tools(boot["backend"], boot["files"]))
        files[kernel.UNIT_PATH] = (kernel.unit_text(
            boot["backend"], boot["files"], bins, p["ipv6_forwarding"],
            kernel.SYSCTL_FILE[True]), 0o644)
        # Hairpin's address sets follow address changes between runs: the refresh script,
        # run by the link managers' hooks and once the network is up at boot.
        files[refresh.SCRIPT_PATH] = (refresh.SCRIPT, 0o755)
        files[refresh.UNIT_PATH] = (refresh.UNIT, 0o644)
        for path, content in refresh.HOOKS.items():
            if host.is_dir(os.path.dirname(path)):
                files[path] = (content, 0o755)
    for path, (content, mode) in sorted(files.items()):
        before = host.read_file(path)
        if before != content:
            result["files"].append(path)
            result["changes"].append("~ write " + path)
            diff["before"] += "# %s\n%s" % (path, before or "(absent)\n")
            diff["after"] += "# %s\n%s" % (path, content)
            if not module.check_mode:
                host.write_file(path, content, mode)
    if host.read_file(stale) is not None:  # persist switched: the other file goes
        result["files"].append(stale)
        result["changes"].append("~ remove " + stale)
        if not module.check_mode:
            host.remove_file(stale)
    if boot:
        reload = bool({kernel.UNIT_PATH, refresh.UNIT_PATH} & set(result["files"]))
        result["unit"] = _enable_units(module, host, reload)
        result["changes"].extend("~ enable " + name for name in result["unit"]["enabled_now"])

    # Live values, forwarding last: the rules are in place by now.
    if host.read_sysctl(kernel.CONNTRACK_MAX)[0] is None:
        complaint = host.load_conntrack() if not module.check_mode else ""
        if host.read_sysctl(kernel.CONNTRACK_MAX)[0] is None and not module.check_mode:
            return {"failed": True, "changed": bool(result["files"]), "msg": (
                "connection tracking (nf_conntrack) is not loaded and could not be loaded%s; "
                "in a container, load nf_conntrack on the host" % (
                    ": " + complaint if complaint else ""))}
    for key, value in wanted:
        current, writable = host.read_sysctl(key)
        if current == value:
            continue
        if key == kernel.CONNTRACK_MAX and not writable:
            module.warn(
                "%s is %s, not %s, and it is read-only here: only the host's initial network "
                "namespace can change it, so this is probably a container. Set it on the host; "
                "the value stays in %s for when it can apply."
                % (key, current, value, kernel.SYSCTL_FILE[p["persist"]]))
            continue
        result["sysctl"][key] = {"before": current, "after": value}
        result["changes"].append("~ %s: %s -> %s" % (key, current, value))
        diff["before"] += "%s = %s\n" % (key, current)
        diff["after"] += "%s = %s\n" % (key, value)
        if not module.check_mode:
            host.write_sysctl(key, value)
    result["changed"] = bool(result["files"] or result["sysctl"] or result["unit"].get("changed"))
    if module._diff and result["changed"]:
        result["diff"] = dict(diff, before_header="kernel settings", after_header="kernel settings")
    return result


def _enable_units(module, host, reload):
    """daemon-reload when a unit file changed, then enable the units that are not."""
    names = (kernel.UNIT_NAME, refresh.UNIT_NAME)
    off = []
    for name in names:
        rc, state = host.systemctl("is-enabled", name)
        if rc != 0 or state.splitlines()[-1:] != ["enabled"]:
            off.append(name)
    out = {"path": kernel.UNIT_PATH, "enabled": True, "enabled_now": off,
           "changed": bool(reload or off)}
    if module.check_mode:
        return out
    for args in (["daemon-reload"] if reload else [], ["enable"] + off if off else []):
        if not args:
            continue
        rc, output = host.systemctl(*args)
        if rc != 0:
            raise HostError("systemctl %s failed: %s" % (" ".join(args), output))
    return out
