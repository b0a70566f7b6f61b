#!/bin/sh
# Print every firewall rule that is not ours, in a form that is stable between runs: the
# foreign nft table, the list of nft tables other than ours, and iptables-save /
# ip6tables-save without counters, comment lines or our IPMASQ-* chains and jumps.
set -eu
nft list tables | grep -v '^table inet ipmasq$'
nft list table inet foreign | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'
for save in iptables-save ip6tables-save; do
    echo "# $save"
    "$save" | grep -v -e '^#' -e 'IPMASQ-' | sed -E 's/ \[[0-9]+:[0-9]+\]$//'
done
