#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nat_rules
short_description: Manage a gateway's masquerade, SNAT, port forwards and forward rules
version_added: 0.1.0
description:
  - Computes the difference between the wanted NAT and forward rules and the rules on the
    host, and applies it in one transaction on nftables or iptables. A second run with the
    same input changes nothing and returns an empty RV(commands).
  - Touches only its own table or chains (C(table inet ipmasq); the C(IPMASQ-*) chains
    with iptables); rules of Docker, firewalld, fail2ban, kube-proxy or anyone else are
    never read, changed or flushed.
  - Every input is validated before the host is contacted. An error names the entry,
    the field and the value, and nothing on the host changes.
  - A failed apply leaves the previous ruleset in place.
  - Concurrent runs on one host are serialised by a lock on C(/run/ipmasq.lock).
author:
  - ipmasq.gateway contributors (@ipmasq)
extends_documentation_fragment:
  - ipmasq.gateway._nat
attributes:
  check_mode:
    description: Computes the exact O(state) C(commands) a real run would apply, and applies nothing.
    support: full
  diff_mode:
    description: Returns the owned ruleset before and after, one rule per line.
    support: full
  platform:
    description: Linux hosts with nftables (C(nft)) or iptables (C(iptables-restore)).
    platforms: posix
    support: full
options:
  state:
    description:
      - V(merged) adds the given rules and updates those with the same identity.
      - V(replaced) makes each kind present in O(config) exactly the given list; kinds
        absent from O(config) stay as they are, so roles that own different kinds compose.
      - V(overridden) makes the whole owned ruleset exactly O(config).
      - V(deleted) removes the given rules (matched by identity). A kind given as an empty
        list loses all its rules; no O(config) at all removes everything of ours.
      - V(gathered) returns the owned rules on the host in RV(gathered).
      - V(rendered) returns the script for O(config) in RV(rendered), without contacting the host.
      - V(parsed) reads O(running_config) into RV(parsed), without contacting the host.
    type: str
    choices: [merged, replaced, overridden, deleted, gathered, rendered, parsed]
    default: merged
  running_config:
    description:
      - With O(state=parsed), the text to read.
      - Text that holds our own C(table inet ipmasq) or C(IPMASQ-*) chains is read as ours,
        strictly; a rule there that the model cannot express is an error.
      - Any other text is imported, so that a hand-made gateway can be migrated. Accepted
        are C(iptables-save) and C(ip6tables-save) output, C(iptables -S) output, lines of
        C(iptables) commands (also without a C(*nat) line, after C(sudo), or inside a shell
        script), C(nft list ruleset), C(nft -f) scripts (any table; C(define), C(add rule))
        and C(nft -j list ruleset). Read are the rules of the built-in C(PREROUTING),
        C(POSTROUTING) (nat), C(FORWARD) (filter) and raw C(PREROUTING) chains, and of nft
        base chains on those hooks; C(--to) abbreviations, C(-m multiport) port lists of
        port forwards and port names such as C(ssh) are understood.
      - The chains of other managers (Docker, kube-proxy, ufw, fail2ban, firewalld,
        Tailscale, libvirt, LXD, OpenWrt) and the jumps to them are skipped and counted.
        Every other rule there that the model cannot express (a C(REDIRECT), a negated
        match, a DNAT without C(-i), C(--random-fully)...) is reported as a warning with its
        line number and the reason, and in RV(parse_report); it does not fail the task.
      - Only text that holds no rule, chain or table at all, or that is cut short in the
        middle of a rule, fails. An empty result always comes with a warning saying why.
    type: str
  adopt:
    description:
      - Migrate a hand-made gateway in one run. After our rules are in, the rules in the
        built-in iptables chains (nat C(PREROUTING) and C(POSTROUTING), filter C(FORWARD),
        raw C(PREROUTING), IPv4 and IPv6) that the rules after the run cover are removed,
        each by its exact specification (C(iptables-restore --noflush) with C(-D)), so the
        classic C(iptables -t nat -A POSTROUTING -s LAN -o ppp0 -j MASQUERADE) setup moves
        into our chains without a gap in traffic and without duplicates.
      - A rule counts as covered when O(state=parsed) would read it as entries that the
        ruleset after the run holds, comments aside. Rules of other managers (Docker,
        ufw...) are never removed. Every other rule there stays and is reported, with the
        reason, in RV(adopted) and as a warning.
      - Check mode and diff mode show the removals (the last C(# iptables-restore) part of
        RV(commands), C([hand-made ...]) lines in the diff). If a step fails, the removed
        rules are put back at their places before our rules are restored.
      - Refused together with O(rollback_timeout) when it would remove rules, because the
        rollback timer restores only our own rules.
      - Works with either backend; hand-made native nft tables are not adopted.
    type: bool
    default: false
  foreign_forward_drop:
    description:
      - What to do when a foreign base chain on the forward hook would drop traffic that our
        rules accept. Every base chain there gets a say, so Docker's and ufw's iptables
        C(FORWARD) chain with policy DROP, or firewalld's C(filter_FORWARD), drop what
        C(table inet ipmasq) accepted. Before it changes anything, the module reads those
        chains (nft tables, the iptables-nft and legacy C(FORWARD) chains) and walks the
        traffic of the rules after the run through them (masquerade and SNAT both ways,
        port forwards and their replies, accepting forward rules).
      - V(fail) fails before any change, naming each chain, its policy or the rule that
        drops, the traffic, and the ways out. With O(backend=auto) the module first passes
        over to a backend that works on that host. The iptables backend's jump decides
        inside the iptables C(FORWARD) chain, after C(DOCKER-USER) and ufw's chains, so a
        Docker or ufw C(FORWARD) policy DROP does not stop it (and a DROP an admin put in
        C(DOCKER-USER) still does).
      - V(warn) applies anyway and warns with the same message; the result holds it in
        RV(foreign_forward_drop). Use it when a rule the check cannot read (an ipset, a
        mark) lets the traffic through.
      - Ways out, besides the iptables backend, are accept rules in C(DOCKER-USER); ufw's
        C(DEFAULT_FORWARD_POLICY="ACCEPT") in C(/etc/default/ufw), or C(ufw route allow);
        a firewalld policy whose target is C(ACCEPT) from the LAN's zone to the WAN's zone.
      - A match the check cannot read makes a rule uncertain; an uncertain drop is not
        reported, an uncertain accept does not count as one.
      - O(state=deleted) is not checked; it only takes accepts away.
    type: str
    choices: [fail, warn]
    default: fail
  conntrack_flush:
    description:
      - V(affected) deletes the connection-tracking entries of port forwards that were
        changed or removed, so that the next packets of a flow follow the new rule instead
        of the old mapping. Other connections stay up.
      - V(none) leaves conntrack alone.
    type: str
    choices: [affected, none]
    default: affected
  rollback_timeout:
    description:
      - Commit-confirm. A number of seconds above V(0) arms a timer on the host, before the
        change is applied, that restores the previous rules unless the change is confirmed
        in time. The timer is a detached process started by the module, so it does not
        depend on the Ansible connection and it runs in the same network namespace.
      - The task then confirms over a new connection to the host (see O(confirm)). If the
        change cut the controller off, that connection fails, the timer restores the
        previous rules and the task fails saying so.
      - Files for O(persist) are written only when the change is confirmed.
      - Choose a value above the connection timeout of the inventory (SSH's is 10 s).
    type: int
    default: 0
  confirm:
    description:
      - With O(rollback_timeout), confirm the change right away over a new connection.
      - V(false) leaves the timer armed and returns RV(rollback_token); a later task (for
        example after health checks) confirms with O(confirm_token).
    type: bool
    default: true
  confirm_token:
    description:
      - Confirm the pending change with this RV(rollback_token) and do nothing else. Its
        held-back persistence files are written. Fails if the rollback already fired, and
        then says whether that rollback restored the previous rules or failed.
      - With O(confirm=false), only report in RV(rollback_status) where that change stands.
      - While a change waits for confirmation, other runs that would change the rules are
        refused (check mode only warns), so that the rollback never undoes a later change
        and the persisted files always hold confirmed rules.
    type: str
  config:
    description:
      - The rules, by kind. Each entry is validated (addresses with Python's C(ipaddress)).
    type: dict
    suboptions:
      masquerade:
        description:
          - Rewrite the source of traffic from O(config.masquerade[].source) leaving by
            O(config.masquerade[].out_interface) to that interface's address.
          - Identity is (source, out_interface). More specific sources are matched first.
        type: list
        elements: dict
        suboptions:
          source:
            description: Source network in CIDR form (IPv4 or IPv6). Omit to match any source.
            type: str
          out_interface:
            description: Interface the traffic leaves by (or a pattern, C(ppp+)). Required.
            type: str
          comment:
            description: Free text kept with the rule (no control characters or double quotes, 128 bytes at most).
            type: str
          ports:
            description:
              - Source ports to pick from, a range C("1024-65535") (or one port). TCP and UDP
                get one rule each with the ports; a last rule takes the other protocols.
            type: raw
          random_fully:
            description:
              - Pick each connection's source port at random (C(fully-random) in nftables,
                C(--random-fully) in iptables), which makes ports hard to predict.
            type: bool
            default: false
          timeouts:
            description:
              - Connection-tracking timeouts in seconds for the connections from
                O(config.masquerade[].source) (required with it), by state, for example
                V(tcp_established) 960 and V(udp) 30 (the seed's HIDE TIMEOUT). Keys
                V(tcp_syn_sent), V(tcp_syn_recv), V(tcp_established), V(tcp_fin_wait),
                V(tcp_close_wait), V(tcp_last_ack), V(tcp_time_wait), V(tcp_close), V(udp)
                (a flow without a reply yet, and a short exchange) and V(udp_stream) (a flow
                with traffic both ways for some seconds).
              - They apply to every connection from the source, whatever interface it
                leaves by, so all masquerade and snat entries of one source must set the
                same ones. States not given keep the global value the host had when the
                object was made (M(ipmasq.gateway.nat_kernel)'s C(conntrack_timeouts)).
              - nftables makes them C(ct timeout) objects of C(table inet ipmasq) (named
                C(ipmasq4u_<hash>), the policy in their comment) that the chain
                C(helpers) sets.
              - iptables makes them conntrack timeout objects with the C(nfct) tool
                (Debian/Ubuntu package C(nfct); without it the module fails before any
                change), set by C(-j CT --timeout NAME) rules in the raw chain
                C(IPMASQ-HELPERS), the policy in their comment. C(iptables-save) lists only
                the first 4 characters of an object's name (iptables 1.8.9), so the names
                are 4 characters from a hash of family, protocol and policy; two policies
                that get one name are refused, naming both. An object is the module's while
                its rules use it; it is made before them and deleted after the last of them
                is gone. An object of that name that no rule of the module uses and that
                sets other timeouts is refused as foreign. The boot unit makes the objects
                from C(/etc/ipmasq/ipmasq.nfct) before it loads the rules. For
                O(state=parsed), append a line C(# nfct) and the output of
                C(nfct list timeout) to the C(iptables-save) text.
            type: dict
      snat:
        description:
          - Like O(config.masquerade), to a fixed address or an address range (pool).
          - Identity is (source, out_interface).
        type: list
        elements: dict
        suboptions:
          source:
            description: Source network in CIDR form. Omit to match any source.
            type: str
          out_interface:
            description: Interface the traffic leaves by. Required.
            type: str
          to_address:
            description:
              - Address, or a range C(203.0.113.10-203.0.113.20) (a pool), to rewrite the
                source to. Required.
            type: str
          comment:
            description: Free text kept with the rule.
            type: str
          ports:
            description:
              - Source ports to pick from, a range C("1024-65535") (or one port). TCP and UDP
                get one rule each with the ports; a last rule takes the other protocols.
            type: raw
          random_fully:
            description:
              - Pick each connection's source port at random (C(fully-random) in nftables,
                C(--random-fully) in iptables), which makes ports hard to predict.
            type: bool
            default: false
          persistent:
            description:
              - With a range in O(config.snat[].to_address), a client keeps the same
                address of the pool for all its connections.
            type: bool
            default: false
          timeouts:
            description:
              - Connection-tracking timeouts in seconds for the connections from
                O(config.snat[].source) (required with it), by state. The keys, what they
                apply to and how each backend makes them are those of
                O(config.masquerade[].timeouts); all masquerade and snat entries of one
                source must set the same ones.
            type: dict
      port_forwards:
        description:
          - Static NAT (DNAT) from a port on the gateway to a host inside. Traffic that was
            forwarded this way is accepted by the forward chain ahead of O(config.forward).
          - Identity is (in_interface, protocol, port); V(tcp_udp) stands for two entries.
          - On nftables, single-port forwards without O(config.port_forwards[].source) live in a map,
            so the cost per packet does not grow with their number. On iptables each
            forward is one rule.
        type: list
        elements: dict
        suboptions:
          in_interface:
            description: Interface the traffic comes in by. Required.
            type: str
          protocol:
            description: Transport protocol.
            type: str
            choices: [tcp, udp, tcp_udp]
            default: tcp
          port:
            description: Port, or range C(5000-5010), on the gateway. Required.
            type: raw
          to_address:
            description: Inside host to forward to. Required except with O(state=deleted).
            type: str
          to_port:
            description:
              - Port on the inside host; defaults to O(config.port_forwards[].port).
              - A range forward keeps its ports, so for a range omit this or give the same range.
            type: raw
          source:
            description: Only clients from this network (CIDR) are forwarded.
            type: str
          hairpin:
            description:
              - Also forward when clients behind the gateway's other interfaces connect to
                the address of O(config.port_forwards[].in_interface) on that port, and
                masquerade that traffic so the replies come back through the gateway.
              - Only the addresses of O(config.port_forwards[].in_interface) are matched;
                connections to the gateway's other addresses (its LAN address, where its own
                SSH or DNS listens) stay the gateway's. O(config.port_forwards[].source)
                applies here too, so a forward limited to a partner network hairpins only
                for clients from that network.
              - The module reads the interface's addresses (C(ip addr), global scope) at
                every run and keeps them in a set per interface and address family, named
                after it, C(hp4_<interface>) and C(hp6_<interface>) in C(table inet ipmasq),
                or the ipsets C(ipmasq-hp4-<interface>) and C(ipmasq-hp6-<interface>) with
                O(backend=iptables), which needs the C(ipset) command. An address that
                changes between runs (PPP, DHCP) hairpins only once the sets are refilled,
                by the next run (check mode shows it as a set element change), or by the
                C(ipmasq-refresh) script of the P(ipmasq.gateway.gateway#role) role
                (C(roles/gateway/files/ipmasq-refresh)), run from PPP's
                C(/etc/ppp/ip-up.d/), from the hook of a DHCP client or of any other tool
                that changes the address, and once at boot after the network is up.
              - An interface without addresses (down, not up yet) gets empty sets, which
                match nothing. With O(state=rendered) the module cannot know the addresses,
                so the sets are rendered empty.
            type: bool
            default: false
          comment:
            description: Free text kept with the rule.
            type: str
      forward:
        description:
          - Ordered rules of the forward chain (filter), after the accept for port forwards.
          - Identity is the whole rule except its comment.
        type: list
        elements: dict
        suboptions:
          in_interface:
            description: Interface the traffic comes in by.
            type: str
          out_interface:
            description: Interface the traffic leaves by.
            type: str
          source:
            description: Source network (CIDR).
            type: str
          destination:
            description: Destination network (CIDR).
            type: str
          protocol:
            description: Protocol to match.
            type: str
            choices: [tcp, udp, icmp, icmpv6]
          port:
            description: Destination port or range; needs O(config.forward[].protocol) V(tcp) or V(udp).
            type: raw
          ct_state:
            description: Connection-tracking states to match, for example V(established) and V(related).
            type: list
            elements: str
            choices: [new, established, related, invalid, untracked]
          action:
            description: What to do with matching traffic.
            type: str
            choices: [accept, drop, reject]
            default: accept
          comment:
            description: Free text kept with the rule.
            type: str
      helpers:
        description:
          - Conntrack helpers attached to matching traffic only (not the kernel's automatic
            assignment), for protocols that carry addresses inside, such as FTP.
          - Identity is the whole entry.
        type: list
        elements: dict
        suboptions:
          helper:
            description: Kernel helper name, one of V(amanda), V(ftp), V(irc), V(netbios-ns), V(pptp), V(sane),
              V(sip), V(snmp), V(tftp).
            type: str
          protocol:
            description: Protocol; defaults to the helper's usual one.
            type: str
            choices: [tcp, udp]
          port:
            description: Port (or range) the helper is attached to. Required.
            type: raw
      input:
        description:
          - Traffic to the gateway itself (its SSH, VPN or web server) that an interface
            lets in. Without entries for an interface, the module does not filter what
            reaches the gateway by it.
          - Listing an entry for an interface turns filtering on there, as appliance
            firewalls do on their WAN side. By that interface the gateway then accepts
            replies to its own connections (C(ct state established,related)), the listed
            traffic and ICMPv6 (IPv6 needs it to find its neighbours, RFC 4890), and drops
            everything else. Other interfaces stay unfiltered, and forwarded traffic is
            not affected (see O(config.forward)).
          - The rules live in the chain C(input) of C(table inet ipmasq), declared only
            while it has rules, or in the chain C(IPMASQ-INPUT) of the C(filter) table
            with one jump from C(INPUT). With iptables, C(ip6tables) gets them only when
            the ruleset holds IPv6 rules too.
          - Connections that are established stay up when their entry goes away.
          - Identity is (in_interface, protocol, port, source); V(tcp_udp) stands for two entries.
          - Leaving out the port of the SSH session that manages the gateway cuts the
            controller off; use O(rollback_timeout).
        type: list
        elements: dict
        suboptions:
          in_interface:
            description: Interface the traffic comes in by. Required.
            type: str
          protocol:
            description: Protocol to let in; V(icmp) is IPv4's (ping), and takes no port.
            type: str
            choices: [tcp, udp, tcp_udp, icmp]
            default: tcp
          port:
            description: Port, or range C(5000-5010), on the gateway. Required except for V(icmp).
            type: raw
          source:
            description: Only from this network (CIDR).
            type: str
          comment:
            description: Free text kept with the rule.
            type: str
      static_nat:
        description:
          - 1:1 NAT. Traffic that arrives by O(config.static_nat[].interface) for
            O(config.static_nat[].external) goes to O(config.static_nat[].internal), on every
            port and protocol, and the forward chain lets it through as it does port
            forwards. Traffic from O(config.static_nat[].internal) that leaves by that
            interface leaves as O(config.static_nat[].external), ahead of O(config.masquerade)
            and O(config.snat).
          - External and internal may be networks of one prefix length, mapped address for
            address (C(192.168.10.0/29) to C(203.0.113.8/29), NETMAP). IPv4 and IPv6.
          - The external address must reach the gateway, routed to it or held by its
            interface; the module adds no address.
          - Its rules come first in C(prerouting), so for its external address it takes
            every port, ahead of O(config.port_forwards) on the same interface. Port
            forwards publish the addresses of their interface, so a static NAT whose external
            address is one the interface holds, where port forwards arrive too, is refused
            (the module reads the addresses at every run, as for hairpin).
          - Rendered as C(dnat ip prefix to) / C(snat ip prefix to) in nftables, and as
            C(NETMAP) in iptables (a single address as a /32 or /128 prefix).
          - Identity is (interface, external). Two entries whose internal addresses overlap
            are refused.
        type: list
        elements: dict
        suboptions:
          interface:
            description: The interface towards the external side (or a pattern, C(ppp+)). Required.
            type: str
          external:
            description: The public address, or network (CIDR). Required.
            type: str
          internal:
            description: The inside address, or a network as long as O(config.static_nat[].external). Required except with O(state=deleted).
            type: str
          source:
            description: Only clients from this network (CIDR) reach the inside through the external address.
            type: str
          hairpin:
            description:
              - Also map connections to the external address from behind the gateway's other
                interfaces, and masquerade them so the replies come back through the
                gateway. It needs no address set (the external address is known), so it
                works on an interface pattern too.
            type: bool
            default: false
          comment:
            description: Free text kept with the rules.
            type: str
      npt:
        description:
          - IPv6 network prefix translation (RFC 6296). The prefix O(config.npt[].internal)
            leaves by O(config.npt[].interface) as O(config.npt[].external), and traffic to
            the external prefix comes back to the internal one. Both prefixes are of one
            length, C(/64) or shorter.
          - As with O(config.static_nat), the translated prefix is reachable from the
            interface; the forward chain accepts traffic from it to the internal prefix.
          - nftables translates with C(snat ip6 prefix to) / C(dnat ip6 prefix to) in the
            chains C(npt_out) and C(npt_in) of C(table inet ipmasq), declared only while
            they have rules, ahead of the other NAT. That is stateful prefix NAT, which keeps
            the interface identifier, so C(fd00:1::10) leaves as C(2001:db8:1::10).
          - iptables uses ip6tables' C(SNPT) and C(DNPT) in the C(mangle) table (chains
            C(IPMASQ-NPT-OUT) and C(IPMASQ-NPT-IN)), stateless and checksum-neutral, as
            RFC 6296 describes, so it changes the interface identifier too (C(fd00:1::10)
            leaves as another address of C(2001:db8:1::/64), the same every time).
            As that documentation requires, the translated flows are kept out of
            connection tracking (C(-j CT --notrack) in the C(raw) chain C(IPMASQ-HELPERS))
            for traffic from the internal prefix and for traffic to the external prefix
            arriving by the interface; rules on connection states (C(ct state)) do not
            apply to it, and the forward accept above lets the replies in.
          - Identity is (interface, internal).
        type: list
        elements: dict
        suboptions:
          interface:
            description: The interface towards the external side (or a pattern, C(ppp+)). Required.
            type: str
          internal:
            description: The inside IPv6 prefix (CIDR). Required.
            type: str
          external:
            description: The public IPv6 prefix, as long as O(config.npt[].internal). Required except with O(state=deleted).
            type: str
          comment:
            description: Free text kept with the rules.
            type: str
      connection_limits:
        description:
          - The seed's MAXCON. A host of O(config.connection_limits[].source) that holds
            O(config.connection_limits[].per_address) connections through the gateway gets
            further new ones refused; other hosts are not affected.
          - The rules come first in the forward chain (C(ct count) in a dynamic set per
            rule in nftables, C(connlimit) in iptables), so they count connections the
            gateway forwards, not connections to the gateway itself.
          - Identity is (source, protocol).
        type: list
        elements: dict
        suboptions:
          source:
            description: The network (CIDR) whose hosts are limited, each on its own. Required.
            type: str
          per_address:
            description: The connections one host may hold. Required except with O(state=deleted).
            type: int
          protocol:
            description: Count only these connections; V(any) counts all.
            type: str
            choices: [tcp, udp, any]
            default: any
          action:
            description: V(reject) answers with ICMP port unreachable, V(drop) is silent.
            type: str
            choices: [reject, drop]
            default: reject
notes:
  - IP forwarding must be on for the rules to carry traffic between interfaces; this
    module does not switch it on. Use M(ipmasq.gateway.nat_kernel) (as the
    P(ipmasq.gateway.gateway#role) and P(ipmasq.gateway.forwarding#role) roles do), or
    set C(net.ipv4.ip_forward=1) (and C(net.ipv6.conf.all.forwarding=1) for IPv6) with
    C(sysctl) yourself.
  - O(persist=true) writes the owned ruleset to C(/etc/ipmasq/). Nothing loads those files
    at boot but the unit C(ipmasq.service), which M(ipmasq.gateway.nat_kernel) installs with
    its O(ipmasq.gateway.nat_kernel#module:boot_unit) option (the
    P(ipmasq.gateway.gateway#role) and P(ipmasq.gateway.forwarding#role) roles do that).
    Without that unit the rules are gone after a reboot.
  - The gateway's own services (its SSH, DNS or web interface) are not filtered unless
    O(config.input) lists entries for the interface they are reached by.
  - An interface named in O(config) that does not exist on the host gets a warning, not an
    error (a PPP or VPN link may come up later); the rules that name it match nothing
    until it does.
  - Every interface field also takes a pattern, a name that ends in C(+) (iptables'
    spelling), for links that come and go. C(ppp+) matches C(ppp0), C(ppp1) and every
    other interface whose name starts with C(ppp); nftables gets C(ppp*). The rules match
    by name at every packet, so masquerade out of C(ppp+) keeps working when the link comes
    up after the rules were applied, and when it gets another address. Only a C(+) at the
    end is a pattern; C(*), C(?) or a C(+) elsewhere are refused.
  - Port forwards on a pattern are rules of their own in C(prerouting) (the nftables maps
    hold one interface per element). O(config.port_forwards[].hairpin) is refused on a
    pattern, since it needs the addresses of one interface.
  - On iptables-legacy hosts the C(--test) check of C(iptables-restore) is strong; on
    iptables-nft hosts the kernel is the final check, and a rejected transaction still
    changes nothing.
seealso:
  - name: nftables wiki, performing network address translation
    description: The NAT statements this module writes.
    link: https://wiki.nftables.org/wiki-nftables/index.php/Performing_Network_Address_Translation_(NAT)
"""

EXAMPLES = r"""
- name: Masquerade the office LAN out of ppp0, forward a web server, keep the WAN out
  ipmasq.gateway.nat_rules:
    config:
      masquerade:
        - {source: 192.168.10.0/24, out_interface: ppp0, comment: office}
      port_forwards:
        - {in_interface: ppp0, protocol: tcp, port: 8080, to_address: 192.168.10.5, to_port: 80}
        - {in_interface: ppp0, protocol: tcp_udp, port: "5000-5010", to_address: 192.168.10.6}
      forward:
        - {in_interface: ppp0, ct_state: [established, related], action: accept}
        - {out_interface: ppp0, source: 192.168.10.0/24, action: accept}
        - {in_interface: ppp0, action: drop}

- name: Only the port forwards become exactly this list; NAT and forward rules stay
  ipmasq.gateway.nat_rules:
    state: replaced
    config:
      port_forwards:
        - {in_interface: ppp0, port: 2222, to_address: 192.168.10.7, to_port: 22}

- name: Thousands of forwards kept in a JSON file - hand over its text, the module decodes it
  # ({"port_forwards": [...]}). Cheaper than "| from_json" or loading the list as variables,
  # which ansible-core decodes and tags value by value: about 0.7 s and 1.8 s per 10,000.
  ipmasq.gateway.nat_rules:
    state: replaced
    config: "{{ lookup('ansible.builtin.file', 'forwards.json') }}"

- name: Plan only - what would change, as the exact commands
  ipmasq.gateway.nat_rules:
    state: overridden
    config:
      snat:
        - {source: 10.20.0.0/16, out_interface: eth0, to_address: 203.0.113.10}
  check_mode: true
  diff: true
  register: plan

- name: Migrate a hand-made gateway - read its iptables rules into the model
  ipmasq.gateway.nat_rules:
    state: parsed
    running_config: |
      *nat
      -A POSTROUTING -s 192.168.0.0/24 -o ppp0 -j MASQUERADE
      -A PREROUTING -i ppp0 -p tcp --dport 8080 -j DNAT --to-destination 192.168.0.5:80
      COMMIT
      *filter
      -A FORWARD -s 192.168.0.0/24 -o ppp0 -j ACCEPT
      -A FORWARD -d 192.168.0.0/24 -m state --state ESTABLISHED,RELATED -i ppp0 -j ACCEPT
      COMMIT
  register: migrated

- name: Adopt a hand-made gateway - our rules in, the hand-typed ones they cover out, one run
  ipmasq.gateway.nat_rules:
    state: merged
    adopt: true
    config: "{{ migrated.parsed }}"

- name: Change the forwards with a way back - undone unless the host is still reachable
  ipmasq.gateway.nat_rules:
    state: replaced
    rollback_timeout: 30
    config:
      port_forwards:
        - {in_interface: ppp0, port: 443, to_address: 192.168.10.5}

- name: Keep the rollback armed across health checks, then confirm
  ipmasq.gateway.nat_rules:
    state: merged
    rollback_timeout: 120
    confirm: false
    config:
      masquerade:
        - {source: 192.168.20.0/24, out_interface: ppp0}
  register: change

- name: Confirm after the checks passed
  ipmasq.gateway.nat_rules:
    confirm_token: "{{ change.rollback_token }}"
  when: change.rollback_token is defined

- name: Protect the gateway itself on ppp0 - SSH from one network, WireGuard from anywhere
  ipmasq.gateway.nat_rules:
    state: replaced
    rollback_timeout: 30
    config:
      input:
        - {in_interface: ppp0, protocol: tcp, port: 22, source: 198.51.100.0/24}
        - {in_interface: ppp0, protocol: udp, port: 51820}

- name: A public address for one server (1:1 NAT), a /29 mapped address for address
  ipmasq.gateway.nat_rules:
    state: replaced
    config:
      static_nat:
        - {interface: ppp0, external: 203.0.113.10, internal: 192.168.10.20, comment: mail}
        - {interface: ppp0, external: 203.0.113.16/29, internal: 192.168.10.16/29}

- name: IPv6 prefix translation, and at most 128 connections per LAN host (MAXCON)
  ipmasq.gateway.nat_rules:
    state: merged
    config:
      npt:
        - {interface: ppp0, internal: "fd00:10::/64", external: "2001:db8:10::/64"}
      connection_limits:
        - {source: 192.168.10.0/24, per_address: 128}

- name: Masquerade out of whatever ppp link is up, with its own timeouts (nftables)
  ipmasq.gateway.nat_rules:
    backend: nftables
    config:
      masquerade:
        - source: 192.168.10.0/24
          out_interface: ppp+
          ports: "1024-65535"
          random_fully: true
          timeouts: {tcp_established: 960, udp: 30}

- name: A pool of public addresses; each client keeps its address
  ipmasq.gateway.nat_rules:
    config:
      snat:
        - {source: 10.20.0.0/16, out_interface: eth0, to_address: 203.0.113.10-203.0.113.20,
           persistent: true}

- name: Remove every rule of ours (playbooks/remove.yml also removes the files and boot unit)
  ipmasq.gateway.nat_rules:
    state: deleted
    persist: false
"""

RETURN = r"""
backend:
  description: The backend used (V(auto) resolved).
  returned: always
  type: str
  sample: nftables
before:
  description:
    - The owned rules before the run, by kind, as in O(config).
    - Left out when the task changes nothing and diff mode is off, so that a no-change run of
      a large ruleset stays small; O(state=gathered) reads the rules, RV(summary) counts them.
  returned: when O(state) is merged, replaced, overridden or deleted, and the task changes something or diff mode is on
  type: dict
  sample: {masquerade: [], snat: [], port_forwards: [], forward: [], helpers: [], input: [],
           static_nat: [], npt: [], connection_limits: []}
after:
  description:
    - The owned rules after the run (in check mode, the predicted ones). When a change made
      with O(rollback_timeout) could not be confirmed, the rules the host's timer restored.
    - Left out when the task changes nothing and diff mode is off, as RV(before).
  returned: when O(state) is merged, replaced, overridden or deleted, and the task changes something or diff mode is on
  type: dict
  sample:
    masquerade: [{source: 192.168.10.0/24, out_interface: ppp0}]
    snat: []
    port_forwards: []
    forward: []
    helpers: []
    input: []
    static_nat: []
    npt: []
    connection_limits: []
commands:
  description:
    - The exact script applied (C(nft -f) input, or C(iptables-restore --noflush) input
      whose parts start with a C(# iptables-restore) or C(# ip6tables-restore) line).
      Empty when nothing changes. In check mode, what a real run would apply.
    - When a run changes both backends (a switch), the nftables part starts with a
      C(# nft -f) line.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
  sample: ['add element inet ipmasq fwd4 { "ppp0" . tcp . 8080 : 192.168.10.5 . 80 }']
summary:
  description: Rules added, removed and unchanged per kind (on every run, changed or not).
  returned: when O(state) is merged, replaced, overridden or deleted
  type: dict
  sample: {masquerade: {added: 1, removed: 0, unchanged: 0}}
persisted:
  description:
    - Files under C(/etc/ipmasq) that were written (or would be, in check mode).
    - With O(rollback_timeout), they are written when the change is confirmed; empty when it
      could not be confirmed and was rolled back.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
conntrack_deleted:
  description: The C(conntrack -D) filters run for changed or removed port forwards.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
rollback_token:
  description: Identifies the armed rollback of a change made with O(rollback_timeout).
  returned: when O(rollback_timeout) is above 0 and the rules changed
  type: str
  sample: 4242-1a2b3c4d5e6f
rollback_status:
  description:
    - Where a change made with O(rollback_timeout) stands. V(pending) while its timer waits,
      V(restored) once the timer restored the previous rules and checked them, V(failed) and
      the reason when it could not (the host then still runs the unconfirmed change), or
      V(unknown).
  returned: with O(confirm_token) and O(confirm=false); when a confirmation came too late
  type: str
  sample: restored
confirmed:
  description: Whether the change was confirmed (commit-confirm), or the token confirmed with O(confirm_token).
  returned: when O(rollback_timeout) or O(confirm_token) is used
  type: raw
gathered:
  description: The owned rules on the host, by kind.
  returned: when O(state=gathered)
  type: dict
rendered:
  description: The script that loads O(config) on a host with none of our rules.
  returned: when O(state=rendered)
  type: list
  elements: str
parsed:
  description: O(running_config) as rules, by kind.
  returned: when O(state=parsed)
  type: dict
parse_report:
  description:
    - What O(state=parsed) read and left out of O(running_config).
    - C(format) (V(iptables), V(nft), V(nft -j), or our own table or chains), C(read) (rules
      read), C(unreadable) (each rule the model cannot express, with C(line), C(rule) and
      C(reason)), C(foreign) (rules of other managers skipped, by manager, with their
      chains), C(out_of_scope) (rules in chains the model does not cover, by chain) and
      C(notes) (policies, duplicates, why the result is empty).
  returned: when O(state=parsed)
  type: dict
  sample:
    format: iptables
    read: 2
    unreadable:
      - {line: 9, rule: "-A PREROUTING -i eth1 -p tcp --dport 80 -j REDIRECT --to-ports 3128",
         reason: "REDIRECT to the gateway itself: the model has no port forward to the gateway's own address"}
    foreign: {Docker: {rules: 12, chains: [DOCKER, DOCKER-USER]}}
    out_of_scope: {filter INPUT: 5}
    notes: []
backend_switch:
  description:
    - Present when the host held our rules in the other backend. They are removed there in
      the same run, after the rules of this backend are in (the last part of RV(commands)).
    - C(from) and C(to) name the backends, C(removed) lists the removed rules.
  returned: when the run switches backends
  type: dict
  sample: {from: iptables, to: nftables, removed: ["postrouting: -s 192.168.10.0/24 -o ppp0 -j MASQUERADE"]}
adopted:
  description:
    - With O(adopt=true), C(removed) lists the hand-made rules the run removed (or would
      remove, in check mode), each with C(family), C(table) and C(rule) as C(iptables-save)
      prints it; C(kept) the rules of those chains that stay, with the C(reason).
  returned: when O(adopt=true) and O(state) changes rules
  type: dict
  sample:
    removed: [{family: 4, table: nat, rule: "-A POSTROUTING -s 192.168.10.0/24 -o ppp0 -j MASQUERADE"}]
    kept:
      - family: 4
        rule: "-A FORWARD -p tcp -m tcp --dport 22 -j LOG"
        reason: "the model cannot express it: target LOG in FORWARD: the model's forward rules accept, drop or reject"
foreign_forward_drop:
  description: The message of O(foreign_forward_drop=warn) when a foreign forward filter drops our traffic.
  returned: when O(foreign_forward_drop=warn) and such a filter was found
  type: str
diff:
  description: The owned ruleset before and after, one rule per line (diff mode).
  returned: when diff mode is on and O(state) changes rules
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat.argspec import MODULE_ARGUMENT_SPEC
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import plan


def main():
    module = AnsibleModule(argument_spec=MODULE_ARGUMENT_SPEC, supports_check_mode=True,
                           required_if=[("state", "parsed", ["running_config"])])
    result = plan.run(module)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
