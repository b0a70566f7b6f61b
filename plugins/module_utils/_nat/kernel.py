# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""A gateway's kernel settings and boot unit, as text and plans (pure; host.py applies).

Forwarding is never written to sysctl.d: at boot, ``ipmasq.service`` switches it off,
loads our ruleset, checks that the file was complete, and only then switches it on. A
ruleset that fails to load leaves the host not forwarding (fail closed).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables

SYSCTL_FILE = {True: "/etc/sysctl.d/90-ipmasq.conf", False: "/run/sysctl.d/90-ipmasq.conf"}
UNIT_PATH = "/etc/systemd/system/ipmasq.service"
UNIT_NAME = "ipmasq.service"
CONNTRACK_MAX = "net.netfilter.nf_conntrack_max"
FORWARDING = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}
# The last line of every persisted ruleset file: the boot unit loads only complete files.
END_MARKER = "# ipmasq: end of ruleset"
# The sysctl file keeps, as comments, each value as it was before the module first managed
# it: state=absent puts those back. The record moves with the file (persist on or off) and
# goes with it.
BEFORE_HEADER = "# Values before ipmasq.gateway, put back by nat_kernel state=absent:"
_BEFORE_LINE = re.compile(r"^#   ([A-Za-z0-9_.-]+) = (.*)$")


def proc_path(key):
    return "/proc/sys/" + key.replace(".", "/")


def wanted_sysctls(options, timeouts):
    """[(key, value)] to set live, in order; forwarding comes last (after the rules)."""
    out = []
    if options.get("conntrack_max"):
        out.append((CONNTRACK_MAX, str(options["conntrack_max"])))
    for short, seconds in sorted(options.get("conntrack_timeouts", {}).items()):
        out.append((timeouts[short], str(seconds)))
    out.append((FORWARDING[4], "1"))
    if options.get("ipv6_forwarding"):
        out.append((FORWARDING[6], "1"))
    return out


def sysctl_file(wanted, before=None):
    """The sysctl.d file: connection tracking only (forwarding is the boot unit's), and as
    comments the values ``before`` ({key: value}) the module first changed them.

    nf_conntrack_max carries the "-" prefix: it is read-only outside the host's initial
    network namespace (containers), and systemd-sysctl then skips it instead of failing.
    """
    lines = ["# Written by ipmasq.gateway. Forwarding is switched on by %s once the" % UNIT_NAME,
             "# NAT ruleset has loaded, never here."]
    if before:
        lines.append(BEFORE_HEADER)
        lines.extend("#   %s = %s" % (key, value) for key, value in sorted(before.items()))
    for key, value in wanted:
        if key in FORWARDING.values():
            continue
        lines.append("%s%s = %s" % ("-" if key == CONNTRACK_MAX else "", key, value))
    return "\n".join(lines) + "\n"


def recorded_before(text):
    """{key: value} of the record a sysctl file holds ({} when none)."""
    out, inside = {}, False
    for line in (text or "").splitlines():
        if line == BEFORE_HEADER:
            inside = True
            continue
        match = _BEFORE_LINE.match(line) if inside else None
        if not match:
            inside = False
            continue
        out[match.group(1)] = match.group(2).strip()
    return out


def restore_plan(before, current, traces):
    """[(key, value)] to set so that the sysctls are as ``before`` records them.

    ``current``: {key: live value}. With no record of IPv4 forwarding, but ``traces`` of
    the module on the host, forwarding goes off: a host without our rules must not route
    into its LAN. IPv4 forwarding comes first, so that the host stops routing before any
    other value changes.
    """
    wanted = dict(before)
    if traces and FORWARDING[4] not in wanted:
        wanted[FORWARDING[4]] = "0"
    order = [FORWARDING[4]] + sorted(k for k in wanted if k != FORWARDING[4])
    return [(key, wanted[key]) for key in order
            if key in wanted and current.get(key) is not None and current[key] != wanted[key]]


def unit_text(backend, files, bins, ipv6_forwarding, sysctl_path):
    """``ipmasq.service``: forwarding off, our ruleset on (complete files only), then the
    conntrack sysctls and forwarding on. ``files`` as nat_rules returns ``persist_files``;
    ``bins`` maps tool names to absolute paths."""
    families = (4, 6) if ipv6_forwarding else (4,)
    lines = [
        "# Written by ipmasq.gateway: restores only the ipmasq ruleset (%s) at boot, then" % backend,
        "# switches on forwarding. If the ruleset does not load, forwarding stays off.",
        "[Unit]",
        "Description=Restore the ipmasq NAT ruleset, then switch on forwarding",
        "DefaultDependencies=no",
        "Wants=network-pre.target",
        "Before=network-pre.target shutdown.target",
        "After=local-fs.target systemd-modules-load.service systemd-sysctl.service",
        "Conflicts=shutdown.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
    ]
    lines += ["ExecStartPre=%s -q -w %s=0" % (bins["sysctl"], FORWARDING[f]) for f in families]
    paths = [files[k] for k in sorted(files)]
    lines += ["ExecStartPre=%s -qxF '%s' %s" % (bins["grep"], END_MARKER, p) for p in paths]
    if backend == "nftables":
        lines.append("ExecStart=%s -f %s" % (bins["nft"], files["nft"]))
    else:
        # Our jumps go first, so that a restart does not add a second one.
        for family, tool in ((4, "iptables"), (6, "ip6tables")):
            for _chain, (table, name, builtin) in sorted(iptables.CHAINS.items()):
                lines.append("ExecStartPre=-%s -w -t %s -D %s -j %s"
                             % (bins[tool], table, builtin, name))
        if "ipset" in files:  # hairpin's address sets, before the rules that name them
            lines.append("ExecStart=%s -exist -file %s restore" % (bins["ipset"], files["ipset"]))
        if "nfct" in files:
            # The timeout objects, before the rules that name them: one nfct command a
            # line, up to the end marker. "-": an object that exists already (a restart)
            # is fine; one that could not be made fails the iptables-restore that names it.
            lines.append("ExecStart=-%s -r -a %s -E '#' -L 1 %s"
                         % (bins["xargs"], files["nfct"], bins["nfct"]))
        lines.append("ExecStart=%s -w --noflush %s" % (bins["iptables-restore"], files["ipv4"]))
        lines.append("ExecStart=%s -w --noflush %s" % (bins["ip6tables-restore"], files["ipv6"]))
    # The conntrack sysctls exist once nf_conntrack is loaded, which loading the rules does.
    lines.append("ExecStartPost=-%s %s" % (bins["systemd-sysctl"], sysctl_path))
    lines += ["ExecStartPost=%s -q -w %s=1" % (bins["sysctl"], FORWARDING[f]) for f in families]
    lines += ["", "[Install]", "WantedBy=multi-user.target"]
    return "\n".join(lines) + "\n"


def unit_tools(backend, files):
    """The tools the unit runs, by name."""
    tools = ["sysctl", "grep", "systemd-sysctl"]
    if backend == "nftables":
        return tools + ["nft"]
    return tools + ["iptables", "ip6tables", "iptables-restore", "ip6tables-restore"] + (
        ["ipset"] if "ipset" in files else []) + (["xargs", "nfct"] if "nfct" in files else [])
