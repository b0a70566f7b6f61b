#!/usr/bin/env bash
# A NAT gateway lab in podman containers, converged with playbooks/site.yml, and proved with
# traffic.
#
#   scripts/lab.sh up     build the lab (or reuse a running one), converge, print the proof
#   scripts/lab.sh down   remove the lab's containers and networks
#
# `make lab` / `make lab-down` run it with the virtualenv on PATH, CONTAINERS_CONF and
# IPMASQ_IMAGE set. After the proof it prints the gateways' status table (playbooks/status.yml).
# The lab:
#
#   lab-gw1-client, lab-gw1-lansrv -- lan1 172.30.30.0/24 -- lab-gw1 (nftables) --+
#                                                                                 wan 198.51.100.64/27
#   lab-gw2-client, lab-gw2-lansrv -- lan2 172.30.40.0/24 -- lab-gw2 (iptables) --+  lab-wansrv, lab-wanclient
#   lab-gw3-client, lab-gw3-lansrv -- lan3 172.30.120.0/24 - lab-gw3 (nftables) --+
#
# lab-gw3's WAN interface is named ppp0, and its ipmasq_wan_interface is the pattern ppp+,
# as for a dial-up link whose number changes (no hairpin there: it needs one interface).
#
# The WAN hosts have no route to the LANs, like hosts on the Internet. Containers and networks
# come from the Molecule scenarios' shared create/prepare playbooks (.config/molecule/) and
# carry the label org.ipmasq.scenario=lab. NAT rules and sysctls change only inside the
# lab's containers.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lab=lab
label="org.ipmasq.scenario=$lab"
work="$repo_root/.build/lab"
inventory="$work/inventory.yml"

export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo_root/containers.conf}
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$repo_root/.build/collections}
export ANSIBLE_FORCE_COLOR=false
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false
export ANSIBLE_NOCOLOR=true
export ANSIBLE_RETRY_FILES_ENABLED=false

gateways=(lab-gw1 lab-gw2 lab-gw3)
containers=(lab-gw1 lab-gw1-client lab-gw1-lansrv lab-gw2 lab-gw2-client lab-gw2-lansrv
    lab-gw3 lab-gw3-client lab-gw3-lansrv lab-wansrv lab-wanclient)
declare -A wan_address=([lab-gw1]=198.51.100.65 [lab-gw2]=198.51.100.66 [lab-gw3]=198.51.100.67)
declare -A hairpin=([lab-gw1]=1 [lab-gw2]=1)  # lab-gw3's WAN interface is a pattern
wansrv_address=198.51.100.70
echo_port=7001

log() { printf '%s lab: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

write_inventory() {
    mkdir -p "$work"
    cat >"$inventory" <<'EOF'
# Written by scripts/lab.sh.
all:
  vars:
    ansible_connection: containers.podman.podman
    ansible_python_interpreter: /usr/bin/python3
    testbed_networks:
      lan1: {subnet: 172.30.30.0/24, interface: lan0}
      lan2: {subnet: 172.30.40.0/24, interface: lan0}
      lan3: {subnet: 172.30.120.0/24, interface: lan0}
      wan: {subnet: 198.51.100.64/27}
  children:
    gateways:
      vars:
        ipmasq_wan_interface: wan0
        ipmasq_inbound_policy: drop
        ipmasq_conntrack_timeouts: {tcp_established: 7200, udp: 60}
      hosts:
        lab-gw1:
          testbed_addresses: {lan1: 172.30.30.1, wan: 198.51.100.65}
          ipmasq_backend: nftables
          ipmasq_lan_networks: [172.30.30.0/24]
          ipmasq_port_forwards:
            - {protocol: tcp, port: 8080, to_address: 172.30.30.20, to_port: 80, hairpin: true, comment: web}
            - {protocol: udp, port: 5353, to_address: 172.30.30.20, to_port: 53, comment: dns}
        lab-gw2:
          testbed_addresses: {lan2: 172.30.40.1, wan: 198.51.100.66}
          ipmasq_backend: iptables
          ipmasq_lan_networks: [172.30.40.0/24]
          ipmasq_port_forwards:
            - {protocol: tcp, port: 8080, to_address: 172.30.40.20, to_port: 80, hairpin: true, comment: web}
            - {protocol: udp, port: 5353, to_address: 172.30.40.20, to_port: 53, comment: dns}
        lab-gw3:
          testbed_addresses: {lan3: 172.30.120.1, wan: 198.51.100.67}
          testbed_interfaces: {wan: ppp0}
          ipmasq_backend: nftables
          ipmasq_wan_interface: ppp+
          ipmasq_lan_networks: [172.30.120.0/24]
          ipmasq_port_forwards:
            - {protocol: tcp, port: 8080, to_address: 172.30.120.20, to_port: 80, comment: web}
            - {protocol: udp, port: 5353, to_address: 172.30.120.20, to_port: 53, comment: dns}
    lab_lan:
      hosts:
        lab-gw1-client: {testbed_addresses: {lan1: 172.30.30.10}, testbed_default_route: 172.30.30.1}
        lab-gw1-lansrv: {testbed_addresses: {lan1: 172.30.30.20}, testbed_default_route: 172.30.30.1}
        lab-gw2-client: {testbed_addresses: {lan2: 172.30.40.10}, testbed_default_route: 172.30.40.1}
        lab-gw2-lansrv: {testbed_addresses: {lan2: 172.30.40.20}, testbed_default_route: 172.30.40.1}
        lab-gw3-client: {testbed_addresses: {lan3: 172.30.120.10}, testbed_default_route: 172.30.120.1}
        lab-gw3-lansrv: {testbed_addresses: {lan3: 172.30.120.20}, testbed_default_route: 172.30.120.1}
    lab_wan:
      hosts:
        lab-wansrv: {testbed_addresses: {wan: 198.51.100.70}}
        lab-wanclient: {testbed_addresses: {wan: 198.51.100.71}}
EOF
}

# The variable the shared Molecule playbooks read: the scenario name and its containers.
molecule_yml() {
    local names
    names=$(printf '{"name": "%s"},' "${containers[@]}")
    printf '{"molecule_yml": {"scenario": {"name": "%s"}, "platforms": [%s]}}' "$lab" "${names%,}"
}

lab_running() {
    local name
    for name in "${containers[@]}"; do
        [[ $(podman container inspect --format '{{.State.Running}}' "$name" 2>/dev/null) == true ]] || return 1
    done
}

# Run ipmasq-echo in a container for at most two minutes, as a transient unit; wait until it listens.
start_echo() {
    local name=$1 proto=$2 port=$3 unit=$4
    stop_echo "$name" "$unit"  # left over from an interrupted run
    podman exec "$name" systemd-run --quiet --unit="$unit" --collect --property=RuntimeMaxSec=120 \
        /usr/local/bin/ipmasq-echo --name="$name" "--$proto=$port"
    for _ in $(seq 50); do
        [[ -n $(podman exec "$name" ss -Hln --"$proto" "sport = :$port") ]] && return 0
        sleep 0.2
    done
    log "echo server in $name did not listen on $proto/$port"
    return 1
}

stop_echo() {
    podman exec "$1" systemctl stop "$2" >/dev/null 2>&1 || true
}

# probe CLIENT PROTO ADDRESS PORT: the reply line "<server> <source seen> <port>", or nothing.
probe() {
    podman exec "$1" /usr/local/bin/ipmasq-probe "$2" "$3" "$4" --timeout 2 2>/dev/null || true
}

failures=0
check() {  # check LABEL TEXT WHAT STATUS DETAIL: prints "LABEL: TEXT — WHAT OK|FAILED"; STATUS 0 passes
    if [[ $4 == 0 ]]; then
        echo "$1: $2 — $3 OK"
    else
        echo "$1: $2 — $3 FAILED ($5)"
        failures=$((failures + 1))
    fi
}

# The converge per gateway: changed tasks, and module runs on the gateway (a module's result
# carries its invocation; debug, set_fact, assert and include_role run on the controller).
converge_report() {
    python3 - "$1" <<'PY'
import json
import sys

report = json.load(open(sys.argv[1]))
runs, raw, changed = {}, {}, {}
for play in report["plays"]:
    for task in play["tasks"]:
        for host, result in task["hosts"].items():
            name = task["task"]["name"].split(" : ")[-1]
            if "invocation" in result and not result.get("skipped"):
                runs.setdefault(host, []).append(name)
            elif "rc" in result and not result.get("skipped"):  # a raw command
                raw.setdefault(host, []).append(name)
            changed[host] = changed.get(host, 0) + bool(result.get("changed"))
for host, stats in sorted(report["stats"].items()):
    print("converge: %s: %d changed, %d module runs (%s) and %d raw command on the gateway%s" % (
        host, changed.get(host, 0), len(runs.get(host, [])), ", ".join(runs.get(host, [])),
        len(raw.get(host, [])), "; FAILED" if stats["failures"] or stats["unreachable"] else ""))
PY
}

prove() {
    local gw reply server seen lansrv proto to_port port ok
    start_echo lab-wansrv tcp "$echo_port" lab-echo-tcp
    start_echo lab-wansrv udp "$echo_port" lab-echo-udp
    for gw in "${gateways[@]}"; do
        lansrv=$gw-lansrv
        start_echo "$lansrv" tcp 80 lab-echo-web
        start_echo "$lansrv" udp 53 lab-echo-dns
        for proto in tcp udp; do
            reply=$(probe "$gw-client" "$proto" "$wansrv_address" "$echo_port")
            read -r server seen _ <<<"${reply:-none none none}"
            ok=0; [[ $server == lab-wansrv && $seen == "${wan_address[$gw]}" ]] || ok=1
            check "${gw#lab-}" "$proto from $gw-client: WAN server saw source $seen (the gateway's WAN address is ${wan_address[$gw]})" \
                masquerade "$ok" "reply: ${reply:-none}"
        done
        for proto_port in tcp/8080/80 udp/5353/53; do
            IFS=/ read -r proto port to_port <<<"$proto_port"
            reply=$(probe lab-wanclient "$proto" "${wan_address[$gw]}" "$port")
            read -r server seen _ <<<"${reply:-none none none}"
            ok=0; [[ $server == "$lansrv" ]] || ok=1
            check "${gw#lab-}" "$proto/$port -> lan server $proto/$to_port from lab-wanclient: answered by $server" \
                "port forward" "$ok" "reply: ${reply:-none}"
        done
        if [[ -n ${hairpin[$gw]:-} ]]; then
            reply=$(probe "$gw-client" tcp "${wan_address[$gw]}" 8080)
            read -r server seen _ <<<"${reply:-none none none}"
            ok=0; [[ $server == "$lansrv" ]] || ok=1
            check "${gw#lab-}" "tcp/8080 from $gw-client to ${wan_address[$gw]}: answered by $server" \
                hairpin "$ok" "reply: ${reply:-none}"
        else
            reply=$(podman exec "$gw" nft list chain inet ipmasq postrouting 2>/dev/null \
                | grep -cE 'oifname "ppp\*" (counter (packets [0-9]+ bytes [0-9]+ )?)?masquerade' || true)
            ok=0; [[ $reply == 1 ]] || ok=1
            check "${gw#lab-}" "WAN interface $(podman exec "$gw" ip -o link show dev ppp0 | cut -d: -f2 | tr -d ' ' | cut -d@ -f1), rules on the pattern ppp+ (nft: ppp*)" \
                "interface pattern" "$ok" "masquerade rules on ppp*: $reply"
        fi
        stop_echo "$lansrv" lab-echo-web
        stop_echo "$lansrv" lab-echo-dns
    done
    stop_echo lab-wansrv lab-echo-tcp
    stop_echo lab-wansrv lab-echo-udp
}

# The gateways as an operator sees them after the proof: playbooks/status.yml, one line each
# (the counters show the proof's connections; the JSON stays in .build/lab/status.json).
status() {
    log "reading the gateways' status with playbooks/status.yml (log: .build/lab/status.log)"
    if ! ansible-playbook -i "$inventory" "$repo_root/playbooks/status.yml" \
        -e nat_status_json="$work/status.json" >"$work/status.log"; then
        tail -n 30 "$work/status.log"
        failures=$((failures + 1))
        return
    fi
    python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["table"]))' \
        "$work/status.json"
}

up() {
    local started=$SECONDS playbook_dir="$repo_root/.config/molecule" extra
    write_inventory
    extra=$(molecule_yml)
    if lab_running; then
        log "the lab is running: converging it again"
    else
        log "creating the lab containers and networks (image ${IPMASQ_IMAGE:?set IPMASQ_IMAGE, or run make lab})"
        ansible-playbook -i "$inventory" -e "$extra" "$playbook_dir/create.yml" >"$work/create.log" \
            || { tail -n 30 "$work/create.log"; exit 1; }
        ansible-playbook -i "$inventory" "$playbook_dir/prepare.yml" >"$work/prepare.log" \
            || { tail -n 30 "$work/prepare.log"; exit 1; }
    fi
    log "converging the gateways with playbooks/site.yml (log: .build/lab/converge.json)"
    ANSIBLE_STDOUT_CALLBACK=ansible.posix.json \
        ansible-playbook -i "$inventory" "$repo_root/playbooks/site.yml" >"$work/converge.json" \
        || { tail -c 4000 "$work/converge.json"; exit 1; }
    converge_report "$work/converge.json"

    prove
    status
    log "done in $((SECONDS - started)) s; remove the lab with: make lab-down"
    if ((failures > 0)); then
        log "$failures check(s) failed"
        exit 1
    fi
}

down() {
    local ids
    ids=$(podman ps --all --quiet --filter "label=$label")
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086  # one id per word
        podman rm --force --time=0 $ids >/dev/null
    fi
    ids=$(podman network ls --quiet --filter "label=$label")
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086
        podman network rm --force $ids >/dev/null
    fi
    rm -rf "$work"
    log "lab removed"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *)
        echo "usage: $0 up|down" >&2
        exit 2
        ;;
esac
