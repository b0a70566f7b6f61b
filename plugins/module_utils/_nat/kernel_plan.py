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

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import host as hosts
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import kernel
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import refresh
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import role_vars
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat.host import Host, HostError

UNITS = ((kernel.UNIT_NAME, kernel.UNIT_PATH), (refresh.UNIT_NAME, refresh.UNIT_PATH))


def persisted_rulesets():
    """The ruleset files nat_rules persists, of both backends (and their temporary names)."""
    names = list(hosts.PERSIST_FILES["nftables"].values()) + \
        list(hosts.PERSIST_FILES["iptables"].values()) + [hosts.PERSIST_IPSET, hosts.PERSIST_NFCT]
    paths = [os.path.join(hosts.PERSIST_DIR, name) for name in sorted(names)]
    return [p for path in paths for p in (path, path + ".tmp")]


def owned_files():
    """Every file this collection writes on a host (state=absent removes them)."""
    return sorted([kernel.SYSCTL_FILE[True], kernel.SYSCTL_FILE[False], kernel.UNIT_PATH,
                   refresh.UNIT_PATH, refresh.SCRIPT_PATH] + list(refresh.HOOKS)
                  + persisted_rulesets())


def _check(params):
    """Errors that name the option and value, before anything is read or changed."""
    timeouts = params["conntrack_timeouts"] or {}
    for key, seconds in sorted(timeouts.items(), key=str):
        if key not in role_vars.CONNTRACK_TIMEOUTS:
            return "conntrack_timeouts.%s: not a timeout (known: %s)" % (
                key, ", ".join(sorted(role_vars.CONNTRACK_TIMEOUTS)))
        if isinstance(seconds, bool) or not model.digits(str(seconds)) or int(seconds) <= 0:
            return "conntrack_timeouts.%s: must be a positive number of seconds (got %r)" % (
                key, seconds)
    if params["conntrack_max"] is not None and params["conntrack_max"] <= 0:
        return "conntrack_max: must be a positive number (got %d)" % params["conntrack_max"]
    boot = params["boot_unit"]
    if boot:
        wanted = ("nft",) if boot["backend"] == "nftables" else ("ipv4", "ipv6")
        given = sorted(set(boot["files"] or {}) - {"ipset", "nfct"} if boot["backend"] == "iptables"
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
        return (_remove if p["state"] == "absent" else _run)(module, host, p)
    except HostError as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}


def _run(module, host, p):
    timeouts = dict((k, int(v)) for k, v in (p["conntrack_timeouts"] or {}).items())
    wanted = kernel.wanted_sysctls(
        {"conntrack_max": p["conntrack_max"], "conntrack_timeouts": timeouts,
         "ipv6_forwarding": p["ipv6_forwarding"]}, role_vars.CONNTRACK_TIMEOUTS)
    result = {"changed": False, "sysctl": {}, "files": [], "unit": {}, "changes": []}
    diff = {"before": "", "after": ""}

    # Loaded first, so that the values before us can be recorded.
    if host.read_sysctl(kernel.CONNTRACK_MAX)[0] is None:
        complaint = host.load_conntrack() if not module.check_mode else ""
        if host.read_sysctl(kernel.CONNTRACK_MAX)[0] is None and not module.check_mode:
            return {"failed": True, "changed": False, "msg": (
                "connection tracking (nf_conntrack) is not loaded and could not be loaded%s; "
                "in a container, load nf_conntrack on the host" % (
                    ": " + complaint if complaint else ""))}
    # Each value as it was before the module first managed it, for state=absent.
    before = _recorded(host)
    for key, _value in wanted:
        if key not in before and host.read_sysctl(key)[0] is not None:
            before[key] = host.read_sysctl(key)[0]

    # The files first: the live values then match what boot restores.
    files = {kernel.SYSCTL_FILE[p["persist"]]: (kernel.sysctl_file(wanted, before), 0o644)}
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


def _recorded(host):
    """The values before us, from the sysctl file wherever it is (persist on or off)."""
    out = {}
    for path in (kernel.SYSCTL_FILE[False], kernel.SYSCTL_FILE[True]):
        out.update(kernel.recorded_before(host.read_file(path)))
    return out


def _remove(module, host, p):
    """state=absent: the sysctls as they were, then no unit, no file of ours."""
    result = {"changed": False, "sysctl": {}, "files": [], "changes": [],
              "unit": {"path": kernel.UNIT_PATH, "enabled": False, "disabled_now": []}}
    diff = {"before": "", "after": ""}
    present = dict((path, host.read_file(path)) for path in owned_files())
    present = dict((path, text) for path, text in present.items() if text is not None)
    traces = bool(present) or host.is_dir(hosts.PERSIST_DIR)
    before = _recorded(host)
    if traces and kernel.FORWARDING[4] not in before:
        module.warn("no record of %s before ipmasq.gateway (the sysctl file that holds it is "
                    "gone): switching IPv4 forwarding off" % kernel.FORWARDING[4])
    current = dict((key, host.read_sysctl(key)[0]) for key in set(before) | {kernel.FORWARDING[4]})
    for key, value in kernel.restore_plan(before, current, traces):
        if not host.read_sysctl(key)[1]:
            module.warn("%s is %s, not %s as before ipmasq.gateway, and it is read-only here "
                        "(a container): set it on the host" % (key, current[key], value))
            continue
        result["sysctl"][key] = {"before": current[key], "after": value}
        result["changes"].append("~ %s: %s -> %s" % (key, current[key], value))
        diff["before"] += "%s = %s\n" % (key, current[key])
        diff["after"] += "%s = %s\n" % (key, value)
        if not module.check_mode:
            host.write_sysctl(key, value)

    # The units go before their files: systemd forgets a unit it no longer runs.
    for name, path in UNITS:
        if path not in present:
            continue
        enabled = host.systemctl("is-enabled", name)[1].splitlines()[-1:] == ["enabled"]
        active = host.systemctl("is-active", name)[1].splitlines()[-1:] == ["active"]
        if enabled or active:
            result["unit"]["disabled_now"].append(name)
            result["changes"].append("~ disable " + name)
            if not module.check_mode:
                _systemctl(host, "disable", "--now", name)
    for path in sorted(present):
        result["files"].append(path)
        result["changes"].append("~ remove " + path)
        diff["before"] += "# %s\n%s" % (path, present[path])
        diff["after"] += "# %s\n(absent)\n" % path
        if not module.check_mode:
            host.remove_file(path)
    if {kernel.UNIT_PATH, refresh.UNIT_PATH} & set(present) and not module.check_mode:
        _systemctl(host, "daemon-reload")
    if host.is_dir(hosts.PERSIST_DIR):
        others = [name for name in host.list_dir(hosts.PERSIST_DIR)
                  if os.path.join(hosts.PERSIST_DIR, name) not in present]
        if others:
            module.warn("%s stays: it holds files that are not ipmasq.gateway's (%s)"
                        % (hosts.PERSIST_DIR, ", ".join(others)))
        else:
            result["files"].append(hosts.PERSIST_DIR)
            result["changes"].append("~ remove %s/" % hosts.PERSIST_DIR)
            if not module.check_mode:
                host.remove_empty_dir(hosts.PERSIST_DIR)
    result["changed"] = bool(result["files"] or result["sysctl"] or result["unit"]["disabled_now"])
    if module._diff and result["changed"]:
        result["diff"] = dict(diff, before_header="kernel settings and files",
                              after_header="kernel settings and files")
    return result


def _systemctl(host, *args):
    rc, output = host.systemctl(*args)
    if rc != 0:
        raise HostError("systemctl %s failed: %s" % (" ".join(args), output))


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
