# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""The hairpin refresh script and the hooks that run it, as nat_kernel installs them.

A hairpin forward matches the current addresses of its in_interface, which nat_rules
keeps in sets. When a PPP or DHCP address changes between two runs, the script refills
them. It is kept here, as text, so that the module that installs it carries it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

SCRIPT_PATH = "/usr/local/sbin/ipmasq-refresh"
UNIT_NAME = "ipmasq-refresh.service"
UNIT_PATH = "/etc/systemd/system/" + UNIT_NAME

# Hooks of the link managers that change a WAN address: written only where the manager's
# hook directory exists. pppd runs ip-up.d scripts; dhclient-script sources its hooks.
HOOKS = {
    "/etc/ppp/ip-up.d/ipmasq": "#!/bin/sh\n# ipmasq.gateway: the new address into the hairpin sets\n"
                               "exec %s\n" % SCRIPT_PATH,
    "/etc/dhcp/dhclient-exit-hooks.d/ipmasq": (
        "# ipmasq.gateway: the new address into the hairpin sets (sourced by dhclient-script)\n"
        "case \"$reason\" in BOUND|RENEW|REBIND|REBOOT) %s || true ;; esac\n" % SCRIPT_PATH),
}

# Once at boot, after the network is up: the persisted sets hold the addresses of the
# last run, and static interfaces get theirs without any hook.
UNIT = """# Written by ipmasq.gateway: refill the hairpin address sets once the network is up.
[Unit]
Description=Refill the ipmasq hairpin address sets
Wants=network-online.target
After=network-online.target ipmasq.service

[Service]
Type=oneshot
ExecStart=%s

[Install]
WantedBy=multi-user.target
""" % SCRIPT_PATH

SCRIPT = r'''#!/bin/sh
# ipmasq-refresh: refill the hairpin address sets of ipmasq.gateway with the current
# addresses of their interfaces.
#
# A port forward with hairpin matches only the addresses of its in_interface. The
# nat_rules module keeps them in sets named after the interface and fills them at every
# run: hp4_<interface> and hp6_<interface> in nft's table inet ipmasq, or the ipsets
# ipmasq-hp4-<interface> and ipmasq-hp6-<interface> (iptables backend). When an address
# changes between two runs (PPP, DHCP), run this script, for example:
#   - from /etc/ppp/ip-up.d/ (PPP), which calls it with its own arguments;
#   - from a DHCP client's hook (dhclient-exit-hooks.d, networkd-dispatcher, ...);
#   - once at boot, after the network is up.
# Until then, hairpin to the new address does not work, and the old address still
# hairpins.
#
# Usage: ipmasq-refresh   (takes no arguments, and ignores those it is given)
# Every set of ours is refilled: sets of interfaces that are down become empty. Each set
# changes in one step (nft: one transaction; ipset: a filled copy swapped in), under the
# lock the module takes (/run/ipmasq.lock, when flock is installed).
# Exit status: 0 done (also when there are no sets), 1 a command failed, 2 the lock was
# not free within 30 seconds.
# Needs: ip; nft and/or ipset for the sets in use; awk.

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 077  # the lock file: whoever can open it can hold the lock
LOCK=/run/ipmasq.lock
status=0

# An interface name as the module allows it: [A-Za-z0-9_.-], not starting with . or -,
# 15 characters at most. Anything else in a set name is not ours.
valid_interface() {
    case $1 in
        '' | [.-]* | *[!A-Za-z0-9_.-]*) return 1 ;;
    esac
    [ "${#1}" -le 15 ]
}

# addresses FAMILY INTERFACE: its addresses of global scope, one a line (the local end of
# a point-to-point link: "inet 203.0.113.5 peer 10.64.0.1/32").
addresses() {
    ip -o "-$1" addr show dev "$2" scope global 2>/dev/null |
        awk '$3 == "inet" || $3 == "inet6" { sub("/.*", "", $4); if ($4 ~ /^[0-9a-fA-F.:]+$/) print $4 }'
}

refresh_nft() {
    command -v nft >/dev/null 2>&1 || return 0
    sets=$(nft list table inet ipmasq 2>/dev/null |
        awk '$1 == "set" && $2 ~ /^hp[46]_/ { print $2 }')
    [ -n "$sets" ] || return 0
    script=""
    for set in $sets; do
        family=${set#hp}
        family=${family%%_*}
        interface=${set#hp?_}
        valid_interface "$interface" || continue
        members=$(addresses "$family" "$interface" | awk 'NR > 1 { printf ", " } { printf "%s", $0 }')
        script="${script}flush set inet ipmasq $set
"
        if [ -n "$members" ]; then
            script="${script}add element inet ipmasq $set { $members }
"
        fi
    done
    [ -n "$script" ] || return 0
    printf '%s' "$script" | nft -f - || status=1
}

refresh_ipset() {
    command -v ipset >/dev/null 2>&1 || return 0
    sets=$(ipset list -n 2>/dev/null | awk '/^ipmasq-hp[46]-/')
    for set in $sets; do
        family=${set#ipmasq-hp}
        family=${family%%-*}
        interface=${set#ipmasq-hp?-}
        valid_interface "$interface" || continue
        inet=inet
        [ "$family" = 6 ] && inet=inet6
        new=ipmasq-new$family-$interface
        {
            echo "create $new hash:ip family $inet"
            echo "flush $new"
            addresses "$family" "$interface" | awk -v set="$new" '{ print "add " set " " $0 }'
            echo "swap $new $set"
            echo "destroy $new"
        } | ipset -exist restore || status=1
    done
}

if command -v flock >/dev/null 2>&1; then
    exec 9>>"$LOCK" || exit 1
    if ! flock -w 30 9; then
        echo "ipmasq-refresh: $LOCK is held by another ipmasq run (waited 30 s)" >&2
        exit 2
    fi
fi
refresh_nft
refresh_ipset
exit "$status"
'''
