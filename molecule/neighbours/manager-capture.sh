#!/bin/sh
# Print the firewall rules of the other managers on this gateway in a form that is stable
# between runs: the nft tables that are neither ours nor iptables-nft's (those show in
# iptables-save), each listed, and iptables-save / ip6tables-save without counters, comment
# lines or our IPMASQ-* chains and jumps. A table section left with nothing but built-in
# chains on policy ACCEPT is dropped: iptables-nft creates a table on first use (ours, here),
# and such a section filters nothing.
set -eu
nft list tables | grep -v -e '^table inet ipmasq$' -e '^table ip6\? \(filter\|nat\|raw\|mangle\|security\)$' \
    | while read -r _table family name; do
        nft list table "$family" "$name" | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'
    done
for save in iptables-save ip6tables-save; do
    echo "# $save"
    "$save" | grep -v -e '^#' -e 'IPMASQ-' | sed -E 's/ \[[0-9]+:[0-9]+\]$//' | awk '
        /^\*/ { section = $0 "\n"; empty = 1; next }
        /^COMMIT$/ { if (!empty) printf "%sCOMMIT\n", section; section = ""; next }
        section != "" { section = section $0 "\n"; if ($0 !~ /^:[A-Z]+ ACCEPT$/) empty = 0; next }
        { print }'
done
