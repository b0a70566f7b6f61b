"""Bad role variables fail before the host is touched, with a message naming the variable.

The roles' half of the bad-input matrix (``test_validation.py`` is the module's half).
A gateway is first set up by ``ipmasq.gateway.gateway`` with good variables. Then every
bad input runs through a role, one ``include_role`` per input inside block/rescue, all in
one playbook. Each must fail, name the variable or field (and the value, where there is
one to name), and leave the host exactly as it was: every rule (nft, iptables, ip6tables),
the forwarding and conntrack sysctls, and every file written under /etc.

Each bad input is given on top of a good change to every other variable (``CHANGED``).
A role that applied its part before another role's check failed would therefore leave a
trace; the last step applies ``CHANGED`` alone and shows that the snapshots see it.
"""
import json
import os
import re
import shlex

import foreign
import scenarios
from foreign import SNAPSHOT_COMMAND, Snapshot
from netlab import LAN_NET, LAN_SERVER
from playbook import etc_upper, role_task, run_plays, systemctl_stand_in, task_results

ROLE_TIMEOUT = 600
WAN = scenarios.WAN_IF
PF = {"protocol": "tcp", "port": 8080, "to_address": LAN_SERVER, "to_port": 80}
PF_UDP = {"protocol": "udp", "port": 5353, "to_address": LAN_SERVER, "to_port": 53}

# The gateway as set up before the bad inputs (play vars; ipmasq_backend and
# ipmasq_conntrack_max are added per test).
BASE = {
    "ipmasq_wan_interface": WAN,
    "ipmasq_lan_networks": [LAN_NET],
    "ipmasq_port_forwards": [PF, PF_UDP],
    "ipmasq_conntrack_timeouts": {"tcp_established": 7200, "udp": 60},
    "ipmasq_helpers": ["ftp"],
    "ipmasq_persist": True,
}

# A good change for every role: masquerade, port_forward and forwarding (rules, live
# sysctls and the sysctl file) would all change the host if they ran.
CHANGED = {
    "ipmasq_lan_networks": [LAN_NET, "10.99.0.0/16"],
    "ipmasq_port_forwards": [PF, PF_UDP, dict(PF, port=8443, to_port=443)],
    "ipmasq_conntrack_timeouts": {"tcp_established": 3600, "udp": 45},
    "ipmasq_ipv6_forwarding": True,
    "ipmasq_helpers": ["ftp", "tftp"],
}

GATEWAY = "ipmasq.gateway.gateway"
MASQUERADE = "ipmasq.gateway.masquerade"
PORT_FORWARD = "ipmasq.gateway.port_forward"
FORWARDING = "ipmasq.gateway.forwarding"


class Got:
    """The message's "got <value>" part, as the module writes it ("(got 0)") or a role's
    check ("got 0."). A bare "0" would be found in "port_forwards[1]" or in a message
    that named some other value."""

    def __init__(self, value):
        self.value = value
        self.pattern = re.compile(r"\bgot \(?%s(?=[).,;\s]|$)" % re.escape(str(value)), re.I)

    def found_in(self, text):
        return bool(self.pattern.search(text))

    def __eq__(self, other):
        return isinstance(other, Got) and other.value == self.value

    def __hash__(self):
        return hash(self.value)

    def __repr__(self):
        return "Got(%r)" % (self.value,)


def pf(**fields):
    """ipmasq_port_forwards with a good first entry and this second one."""
    return {"ipmasq_port_forwards": [PF, dict(dict(PF, port=8081), **fields)]}


def pf_without(field):
    entry = dict(PF, port=8081)
    del entry[field]
    return {"ipmasq_port_forwards": [PF, entry]}


# (role, bad variables, words the message must contain; Got(value): its "got" part)
BAD_INPUTS = [
    # Types and choices: the argument specs.
    (GATEWAY, {"ipmasq_backend": "pf"}, ["ipmasq_backend", "pf"]),
    (GATEWAY, {"ipmasq_backend": "NFTABLES"}, ["ipmasq_backend", "NFTABLES"]),
    (GATEWAY, {"ipmasq_inbound_policy": "reject"}, ["ipmasq_inbound_policy", "reject"]),
    (GATEWAY, {"ipmasq_conntrack_flush": "all"}, ["ipmasq_conntrack_flush", "all"]),
    (GATEWAY, {"ipmasq_persist": "maybe"}, ["ipmasq_persist", "maybe"]),
    (GATEWAY, {"ipmasq_ipv6_forwarding": "sometimes"}, ["ipmasq_ipv6_forwarding", "sometimes"]),
    (GATEWAY, {"ipmasq_conntrack_max": "lots"}, ["ipmasq_conntrack_max", "lots"]),
    (GATEWAY, {"ipmasq_rollback_timeout": "soon"}, ["ipmasq_rollback_timeout", "soon"]),
    (GATEWAY, {"ipmasq_lan_networks": {"lan": LAN_NET}}, ["ipmasq_lan_networks"]),
    (GATEWAY, {"ipmasq_conntrack_timeouts": [7200]}, ["ipmasq_conntrack_timeouts"]),
    (GATEWAY, {"ipmasq_helpers": {"ftp": 21}}, ["ipmasq_helpers"]),
    (GATEWAY, {"ipmasq_port_forwards": {"web": PF}}, ["ipmasq_port_forwards"]),
    (GATEWAY, {"ipmasq_port_forwards": ["8080"]}, ["ipmasq_port_forwards", "dict"]),
    (GATEWAY, pf(protocol="icmp"), ["ipmasq_port_forwards", "protocol", "icmp"]),
    (GATEWAY, pf(prot="udp"), ["ipmasq_port_forwards", "prot"]),
    (GATEWAY, pf(hairpin="perhaps"), ["ipmasq_port_forwards", "hairpin", "perhaps"]),
    (GATEWAY, pf_without("to_address"), ["ipmasq_port_forwards", "to_address"]),
    (GATEWAY, pf_without("port"), ["ipmasq_port_forwards", "port"]),
    # Values only the roles' checks and the module know to be wrong.
    (GATEWAY, {"ipmasq_conntrack_max": 0}, ["ipmasq_conntrack_max", Got(0)]),
    (GATEWAY, {"ipmasq_conntrack_max": -1}, ["ipmasq_conntrack_max", Got(-1)]),
    (GATEWAY, {"ipmasq_rollback_timeout": -5}, ["ipmasq_rollback_timeout", Got(-5)]),
    (GATEWAY, {"ipmasq_wan_interface": ""}, ["ipmasq_wan_interface"]),
    (GATEWAY, {"ipmasq_wan_interface": None}, ["ipmasq_wan_interface"]),
    (GATEWAY, {"ipmasq_lan_network": [LAN_NET]}, ["ipmasq_lan_network:", "did you mean ipmasq_lan_networks?"]),
    (GATEWAY, {"ipmasq_lan_networks": LAN_NET}, ["ipmasq_lan_networks", "must be a list, not a string"]),
    (MASQUERADE, {"ipmasq_portforwards": [PF]}, ["ipmasq_portforwards", "did you mean ipmasq_port_forwards?"]),
    (GATEWAY, {"ipmasq_wan_interface": "wan0; rm -rf /"}, ["ipmasq_wan_interface", "wan0; rm -rf /"]),
    (GATEWAY, {"ipmasq_wan_interface": "w" * 16}, ["ipmasq_wan_interface", "w" * 16]),
    (GATEWAY, {"ipmasq_wan_interface": "wan/0"}, ["ipmasq_wan_interface", "wan/0"]),
    (GATEWAY, {"ipmasq_lan_networks": ["192.168.77.1/24"]}, ["ipmasq_lan_networks", "192.168.77.1/24"]),
    (GATEWAY, {"ipmasq_lan_networks": [LAN_NET, "not-a-net"]}, ["ipmasq_lan_networks", "not-a-net"]),
    (GATEWAY, {"ipmasq_lan_networks": ["0.0.0.0/0"]}, ["ipmasq_lan_networks", "0.0.0.0/0"]),
    (GATEWAY, {"ipmasq_lan_networks": ["192.168.77.0/33"]}, ["ipmasq_lan_networks", "192.168.77.0/33"]),
    (GATEWAY, {"ipmasq_snat_address": "198.51.100.300"}, ["ipmasq_snat_address", "198.51.100.300"]),
    (GATEWAY, {"ipmasq_snat_address": "198.51.100.9-198.51.100.3"},
     ["ipmasq_snat_address", "198.51.100.9-198.51.100.3"]),
    (GATEWAY, {"ipmasq_snat_address": "224.0.0.1"}, ["ipmasq_snat_address", "224.0.0.1"]),
    (GATEWAY, {"ipmasq_snat_address": "2001:db8::1"}, ["ipmasq_snat_address", "2001:db8::1", "IPv4 and IPv6"]),
    (GATEWAY, pf(port=70000), ["port_forwards[1].port", "70000"]),
    (GATEWAY, pf(port=0), ["port_forwards[1].port", Got(0)]),
    (GATEWAY, pf(port="abc"), ["port_forwards[1].port", "abc"]),
    (GATEWAY, pf(port="9002-9000"), ["port_forwards[1].port", "9002-9000"]),
    (GATEWAY, pf(to_port=70000), ["port_forwards[1].to_port", "70000"]),
    (GATEWAY, pf(to_address="192.168.77.300"), ["port_forwards[1].to_address", "192.168.77.300"]),
    (GATEWAY, pf(to_address="127.0.0.1"), ["port_forwards[1].to_address", "127.0.0.1"]),
    (GATEWAY, pf(in_interface="eth0; rm"), ["port_forwards[1].in_interface", "eth0; rm"]),
    (GATEWAY, pf(source="10.0.0.1/8"), ["port_forwards[1].source", "10.0.0.1/8"]),
    (GATEWAY, {"ipmasq_port_forwards": [PF, dict(PF, to_port=81)]}, ["port_forwards[1]", "duplicate"]),
    (GATEWAY, {"ipmasq_port_forwards": [dict(PF, port="8000-8090", to_port=None), PF]},
     ["port_forwards[1].port", "overlaps"]),
    (GATEWAY, {"ipmasq_conntrack_timeouts": {"tcp_established": 3600, "bogus": 5}},
     ["ipmasq_conntrack_timeouts", "bogus"]),
    (GATEWAY, {"ipmasq_conntrack_timeouts": {"udp": 0}}, ["ipmasq_conntrack_timeouts", "udp", Got(0)]),
    (GATEWAY, {"ipmasq_conntrack_timeouts": {"udp": -30}}, ["ipmasq_conntrack_timeouts", "udp", Got(-30)]),
    (GATEWAY, {"ipmasq_conntrack_timeouts": {"udp": "soon"}}, ["ipmasq_conntrack_timeouts", "udp", "soon"]),
    (GATEWAY, {"ipmasq_helpers": ["ftp", "bogus"]}, ["ipmasq_helpers[1]", "bogus"]),
    (GATEWAY, {"ipmasq_helpers": [{"name": "ftp", "port": 70000}]}, ["ipmasq_helpers[0]", "70000"]),
    (GATEWAY, {"ipmasq_helpers": [{"name": "ftp", "protocol": "sctp"}]}, ["ipmasq_helpers[0]", "sctp"]),
    (GATEWAY, {"ipmasq_helpers": [{"port": 21}]}, ["ipmasq_helpers[0]", "name"]),
    (GATEWAY, {"ipmasq_helpers": [{"name": "ftp", "ports": 2121}]}, ["ipmasq_helpers[0]", "ports"]),
    (GATEWAY, {"ipmasq_helpers": [21]}, ["ipmasq_helpers[0]", "21"]),
    (GATEWAY, {"ipmasq_helpers": [{"name": "tftp", "protocol": "tcp"}]}, ["helpers[0].protocol", "tcp"]),
    # The single roles check their own variables.
    (MASQUERADE, {"ipmasq_lan_networks": [LAN_NET, "10.0.0.0/33"]}, ["ipmasq_lan_networks", "10.0.0.0/33"]),
    (MASQUERADE, {"ipmasq_inbound_policy": "reject"}, ["ipmasq_inbound_policy", "reject"]),
    (PORT_FORWARD, pf(port=70000), ["port_forwards[1].port", "70000"]),
    (PORT_FORWARD, {"ipmasq_backend": "pf"}, ["ipmasq_backend", "pf"]),
    (FORWARDING, {"ipmasq_helpers": [{"name": "tftp", "protocol": "tcp"}]}, ["helpers[0].protocol", "tcp"]),
    (FORWARDING, {"ipmasq_conntrack_timeouts": {"tcp_established": 3600, "bogus": 5}},
     ["ipmasq_conntrack_timeouts", "bogus"]),
    (FORWARDING, {"ipmasq_conntrack_max": -1}, ["ipmasq_conntrack_max", Got(-1)]),
]

# The checks of the argument specs and the roles' asserts do not depend on the backend;
# the iptables run takes one input per check that reads the host (the module's, in
# check mode), which keeps the file's run time down.
ON_IPTABLES = [["ipmasq_backend", "pf"], ["ipmasq_rollback_timeout", Got(-5)],
               ["ipmasq_lan_networks", "192.168.77.1/24"], ["ipmasq_wan_interface", "wan0; rm -rf /"],
               ["ipmasq_snat_address", "198.51.100.300"], ["port_forwards[1].port", "70000"],
               ["ipmasq_conntrack_timeouts", "bogus"], ["helpers[0].protocol", "tcp"]]


def cases(backend):
    """(index, role, bad variables, words) of the inputs this backend runs."""
    return [(i, role, bad, words) for i, (role, bad, words) in enumerate(BAD_INPUTS)
            if backend == "nftables" or words in ON_IPTABLES]


SEPARATOR = "----8<-- role validation --8<----"
# Read in the gateway namespace: the sysctls the forwarding role sets. The entry count
# moves by itself and is left out.
SYSCTL_COMMAND = ("sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding"
                  " && sysctl -a -r '^net\\.netfilter\\.' 2>/dev/null | grep -v nf_conntrack_count")


def overlay_command(upper):
    """Every file, directory and whiteout the runs wrote under /etc, with its content's hash."""
    return ("cd %s && find . -printf '%%y %%m %%p %%l\\n' | sort"
            " && find . -type f -exec sha256sum {} + | sort" % shlex.quote(str(upper)))


def snapshot_task(name, upper):
    command = "%s; echo '%s'; %s; echo '%s'; %s" % (
        SNAPSHOT_COMMAND, SEPARATOR, SYSCTL_COMMAND, SEPARATOR, overlay_command(upper))
    return {"name": name, "ansible.builtin.shell": command, "changed_when": False}


def host_state(result):
    """The snapshot task's output as {what: text}, rules with only counters masked."""
    assert result.get("rc") == 0 and not result.get("failed"), result
    rules, sysctls, etc = result["stdout"].split(SEPARATOR + "\n")
    state = foreign.whole(Snapshot.parse(rules))
    state.update({"sysctls": sysctls, "files under /etc": etc})
    return state


def bad_input_block(index, role, bad):
    tag = "bad input %02d" % index
    return {
        "name": tag,
        "block": [
            role_task(tag + ": run " + role, role, dict(CHANGED, **bad)),
            {"name": tag + ": accepted", "ansible.builtin.debug": {"msg": "accepted"}},
        ],
        "rescue": [
            {"name": tag + ": rejected", "ansible.builtin.debug": {"msg": {
                "task": "{{ ansible_failed_task.name }}",
                "msg": "{{ ansible_failed_result.msg | default('') }}",
                "items": "{{ ansible_failed_result.results | default([]) | selectattr('failed', 'defined')"
                         " | selectattr('failed') | map(attribute='msg') | list }}"}}},
        ],
    }


def _tasks_of(results, tag, role):
    """The tasks one bad input ran: from its include_role up to the next input's."""
    start = [name for name, _result in results].index(tag + ": run " + role)
    out = []
    for name, result in results[start + 1:]:
        if name.startswith("bad input ") and not name.startswith(tag) or name == "after":
            break
        out.append((name, result))
    return out


def test_the_matrix_is_large_enough():
    assert len(BAD_INPUTS) >= 40
    assert {role for role, _bad, _words in BAD_INPUTS} == {GATEWAY, MASQUERADE, PORT_FORWARD, FORWARDING}
    assert len(cases("iptables")) >= len(ON_IPTABLES)


def test_bad_role_variables_fail_naming_the_variable_and_change_nothing(lab, tmp_path, backend):
    upper = etc_upper(tmp_path)
    conntrack_max = lab.gw.out("sysctl", "-n", "net.netfilter.nf_conntrack_max").strip()
    # The live value: only the initial namespace can change the table size.
    play_vars = dict(BASE, ipmasq_backend=backend, ipmasq_conntrack_max=int(conntrack_max))
    tasks = [role_task("good gateway", GATEWAY, {}), snapshot_task("before", upper)]
    tasks += [bad_input_block(i, role, bad) for i, role, bad, _words in cases(backend)]
    tasks += [snapshot_task("after", upper),
              role_task("good change", GATEWAY, CHANGED), snapshot_task("changed", upper)]
    play = [{"name": "role validation", "hosts": "all", "gather_facts": False,
             "vars": play_vars, "tasks": tasks}]
    shims = systemctl_stand_in(tmp_path / "shims")
    proc, report = run_plays(lab.gw, tmp_path, play, path_prefix=shims, timeout=ROLE_TIMEOUT)
    (tmp_path / "report.json").write_text(json.dumps(report, indent=1))
    results = task_results(report)
    named = dict(results)
    context = "rc=%s\nstderr: %s\nstdout: %s" % (proc.returncode, proc.stderr[-2000:], proc.stdout[-3000:])
    assert "before" in named and "changed" in named, context
    failed_early = [(n, r.get("msg")) for n, r in results[:results.index(("before", named["before"]))]
                    if r.get("failed")]
    assert not failed_early, "the good gateway failed: %s" % failed_early

    problems = []
    for index, role, bad, words in cases(backend):
        tag = "bad input %02d" % index
        changed = [name for name, result in _tasks_of(results, tag, role) if result.get("changed")]
        if changed:
            problems.append("%s %s changed the host: %s" % (role, bad, changed))
        if tag + ": accepted" in named:
            problems.append("%s accepted %s" % (role, bad))
            continue
        outcome = named.get(tag + ": rejected", {}).get("msg")
        if not isinstance(outcome, dict):
            problems.append("%s: no outcome for %s" % (role, bad))
            continue
        text = "\n".join([outcome["msg"]] + list(outcome["items"]))
        if not all(w.found_in(text) if isinstance(w, Got) else w in text for w in words):
            problems.append("%s %s: message should name %s, got (%s): %s"
                            % (role, bad, words, outcome["task"], text))
    assert not problems, "\n".join(problems)

    before, after = host_state(named["before"]), host_state(named["after"])
    diff = foreign.changes(before, after)
    assert not diff, "bad role variables changed the host:\n" + diff
    assert "ipmasq.service" in before["files under /etc"], before["files under /etc"]
    # The check can fail: a good change of the same variables shows in all three.
    changed = host_state(named["changed"])
    for what in ("nft list ruleset" if backend == "nftables" else "iptables-save", "sysctls",
                 "files under /etc"):
        assert before[what] != changed[what], "the good change left %s as it was" % what
    assert os.path.exists(shims / "calls.log")
