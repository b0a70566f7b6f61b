"""The README's quickstart, run as written against a gateway container, then its undo.

The three files come from the README's ``# file: <path>`` blocks and the commands from its
``ansible-playbook`` lines and its ``# on the gateway`` / ``# on a LAN client`` /
``# from outside`` blocks, so the README cannot drift from what works. What the test
changes, and only that (``on_testbed``):

- the connection: ``-e @connection.yml`` makes Ansible reach the container with podman exec
  as root instead of SSH and sudo to 192.168.10.1;
- the addresses: the README's LAN 192.168.10.0/24 is the test bed's LAN network, PUBLIC is
  the gateway's address on ppp0, and http://ifconfig.me is a server on the WAN that answers
  with the address it sees (so does each LAN web server: "<name> <address>");
- ``sudo`` goes (podman exec runs as root), and each command runs under ``timeout``.

Before the first run, a snapshot of the gateway is taken: its whole ruleset (nft,
iptables, ip6tables), forwarding and conntrack sysctls, the files under every folder the
collection writes to, and the enabled units. The README's undo must bring back exactly
that snapshot. The tests run in file order: the converge ones first, the undo ones last.
"""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
README = PROJECT / "README.md"
WORKDIR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "quickstart"
GATEWAY, CLIENT, WAN = "quickstart-gw", "quickstart-client", "quickstart-wan"
PLAYBOOK_TIMEOUT = 600
COMMAND_TIMEOUT = 15

# Every folder the collection writes to, and the state the undo must restore.
FOLDERS = "/etc/ipmasq /etc/sysctl.d /run/sysctl.d /etc/systemd/system /usr/local/sbin /etc/ppp /etc/dhcp"
SNAPSHOT = {
    "nft list ruleset": "nft list ruleset",
    "iptables-save": "iptables-save | grep -v '^#'",
    "ip6tables-save": "ip6tables-save | grep -v '^#'",
    "sysctls": "sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding; "
               "sysctl -a 2>/dev/null | grep -E '^net\\.netfilter\\.nf_conntrack_[a-z_]*(timeout[a-z_]*|max) '",
    "files": "find %s -printf '%%p %%y %%m %%l\\n' 2>/dev/null | sort" % FOLDERS,
    "contents": "find %s -type f -exec sha256sum {} + 2>/dev/null | sort" % FOLDERS,
    "enabled units": "systemctl list-unit-files --state=enabled --no-legend --plain | sort",
    "ipmasq units": "systemctl list-units --all --no-legend --plain 'ipmasq*'",
}


# ---------------------------------------------------------------- the README

def quickstart_section():
    text = README.read_text()
    start = text.index("\n## Quickstart")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(language):
    return [body for lang, body in re.findall(r"```(\w+)\n(.*?)```", quickstart_section(), re.S)
            if lang == language]


def readme_files():
    """{path: text} of the ``# file: <path>`` blocks."""
    out = {}
    for body in blocks("yaml"):
        match = re.match(r"# file: (\S+)\n", body)
        if match:
            out[match.group(1)] = body
    return out


def readme_commands(marker=None):
    """The commands of the sh blocks that start with ``# <marker>`` (without their comments),
    or with no marker the ``ansible-playbook`` lines."""
    out = []
    for body in blocks("sh"):
        lines = body.splitlines()
        if marker is not None and not (lines and lines[0].startswith("# " + marker)):
            continue
        for line in lines:
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#") and (marker is not None or line.startswith("ansible-playbook ")):
                out.append(line)
    return out


# ---------------------------------------------------------------- the test bed

def lan_prefix(testbed):
    subnet = testbed.variables(GATEWAY)["testbed_networks"]["lan"]["subnet"]
    assert subnet.endswith(".0/24"), subnet
    return subnet[:-len("0/24")]


def on_testbed(testbed, text):
    """README text with the test bed's addresses (see the module docstring)."""
    text = text.replace("192.168.10.", lan_prefix(testbed))
    text = text.replace("http://ifconfig.me", "http://%s" % testbed.address(WAN, "wan"))
    text = re.sub(r"\bPUBLIC\b", testbed.address(GATEWAY, "wan"), text)
    return re.sub(r"^sudo ", "", text)


def run_here(testbed, name, command):
    """A README command in container ``name``, bounded in time."""
    return testbed.host(name).run("timeout %d %s" % (COMMAND_TIMEOUT, on_testbed(testbed, command)))


def snapshot(testbed):
    host = testbed.host(GATEWAY)
    return dict((key, host.run(command).stdout) for key, command in SNAPSHOT.items())


def ansible_playbook(testbed, command):
    """Run a README ansible-playbook line in the folder of the README's files; the one
    change: -e @connection.yml. Returns (rc, output, {host: {ok, changed, ...}})."""
    argv = shlex.split(on_testbed(testbed, command)) + ["-e", "@connection.yml"]
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_")))
    env.update(ANSIBLE_COLLECTIONS_PATH=str(PROJECT / ".build" / "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="false", ANSIBLE_HOME=str(WORKDIR / ".ansible"))
    proc = subprocess.run(argv, cwd=WORKDIR, env=env, capture_output=True, text=True,
                          timeout=PLAYBOOK_TIMEOUT, check=False)
    output = proc.stdout + proc.stderr
    recap = dict((host, dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", counts)))
                 for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", proc.stdout, re.M))
    return proc.returncode, output, recap


@pytest.fixture(scope="module", name="commands")
def fixture_commands():
    """The README's ansible-playbook lines: plan, apply, plan the undo, undo."""
    lines = readme_commands()
    assert len(lines) == 4, lines
    plan, apply, plan_undo, undo = lines
    assert plan == apply + " --check --diff" and apply.endswith(" gateway.yml"), lines
    assert plan_undo == undo + " --check --diff" and undo.endswith(" ipmasq.gateway.remove"), lines
    return {"plan": plan, "apply": apply, "plan undo": plan_undo, "undo": undo}


@pytest.fixture(scope="module", name="before")
def fixture_before(testbed):
    """The README's files in a fresh folder, and the gateway as it is before any run."""
    shutil.rmtree(WORKDIR, ignore_errors=True)
    files = readme_files()
    assert sorted(files) == ["gateway.yml", "inventory/group_vars/gateways.yml", "inventory/hosts.yml"]
    for path, text in files.items():
        (WORKDIR / path).parent.mkdir(parents=True, exist_ok=True)
        (WORKDIR / path).write_text(on_testbed(testbed, text))
    hosts = yaml.safe_load(files["inventory/hosts.yml"])["gateways"]["hosts"]
    assert len(hosts) == 1, hosts
    (WORKDIR / "connection.yml").write_text(yaml.safe_dump({
        "ansible_connection": "containers.podman.podman", "ansible_host": GATEWAY,
        "ansible_user": "root", "ansible_become": False,
        "ansible_python_interpreter": "/usr/bin/python3"}))
    return snapshot(testbed)


@pytest.fixture(scope="module", name="converged")
def fixture_converged(testbed, before, commands):
    """Plan, apply, apply again: {step: (rc, output, recap)} and the snapshot after the plan."""
    out = {"plan": ansible_playbook(testbed, commands["plan"])}
    out["after plan"] = snapshot(testbed)
    out["apply"] = ansible_playbook(testbed, commands["apply"])
    out["again"] = ansible_playbook(testbed, commands["apply"])
    return out


# ---------------------------------------------------------------- the quickstart

def test_the_plan_changes_nothing_and_shows_the_rules(converged, before):
    rc, output, _recap = converged["plan"]
    assert rc == 0, output[-4000:]
    assert converged["after plan"] == before, "the --check --diff run changed the gateway"
    # masquerade + LAN out + replies in + inbound drop, and the two forwards
    assert "gateway: 6 added, 0 removed, 0 unchanged rules (nftables)" in output, output[-4000:]
    assert "[check mode]" in output


def test_the_run_applies_and_a_second_run_changes_nothing(converged):
    rc, output, recap = converged["apply"]
    assert rc == 0, output[-4000:]
    [counts] = recap.values()
    assert counts["changed"] > 0 and counts["failed"] == 0, recap
    rc, output, recap = converged["again"]
    assert rc == 0 and [c["changed"] for c in recap.values()] == [0], output[-4000:]


def test_what_the_readme_shows_on_the_gateway(testbed, converged):
    lines = readme_commands("on the gateway")
    assert len(lines) == 3, lines
    table, unit, forwarding = (run_here(testbed, GATEWAY, line) for line in lines)
    assert table.rc == 0, table.stderr
    rules = testbed.without_counters(table.stdout)
    lan = lan_prefix(testbed) + "0/24"
    assert 'ip saddr %s oifname "ppp0" masquerade' % lan in rules, rules
    assert '"ppp0" . tcp . 80 comment "web server" : %s20 . 80' % lan_prefix(testbed) in rules
    assert '"ppp0" . tcp . 8080 comment "wiki" : %s21 . 80' % lan_prefix(testbed) in rules
    assert unit.stdout.strip() == "enabled", unit.stdout + unit.stderr
    assert forwarding.stdout.strip() == "net.ipv4.ip_forward = 1"


def test_a_lan_client_shows_up_with_the_public_address(testbed, converged):
    [line] = readme_commands("on a LAN client")
    result = run_here(testbed, CLIENT, line)
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == [WAN, testbed.address(GATEWAY, "wan")]


def test_the_two_forwards_answer_from_outside(testbed, converged):
    web, wiki = readme_commands("from outside")
    for line, server in ((web, "quickstart-web"), (wiki, "quickstart-wiki")):
        result = run_here(testbed, WAN, line)
        assert result.rc == 0, (line, result.stderr)
        # the server itself answered, and saw the outside client's own address
        assert result.stdout.split() == [server, testbed.address(WAN, "wan")], line


# ---------------------------------------------------------------- the undo (after the above)

@pytest.fixture(scope="module", name="undone")
def fixture_undone(testbed, converged, commands):
    converged_state = snapshot(testbed)
    out = {"plan": ansible_playbook(testbed, commands["plan undo"])}
    out["after plan"] = snapshot(testbed)
    out["converged"] = converged_state
    out["undo"] = ansible_playbook(testbed, commands["undo"])
    out["after"] = snapshot(testbed)
    out["again"] = ansible_playbook(testbed, commands["undo"])
    return out


def test_the_undo_plan_changes_nothing(undone):
    rc, output, _recap = undone["plan"]
    assert rc == 0, output[-4000:]
    assert undone["after plan"] == undone["converged"], "the undo's --check --diff run changed the gateway"
    assert "net.ipv4.ip_forward" in output and "/etc/ipmasq/ipmasq.nft" in output, output[-4000:]


def test_after_the_undo_the_gateway_is_as_it_began(undone, before):
    rc, output, recap = undone["undo"]
    assert rc == 0, output[-4000:]
    assert [c["changed"] > 0 for c in recap.values()] == [True], recap
    differ = [key for key in before if undone["after"][key] != before[key]]
    assert not differ, "\n".join("%s before:\n%s\nafter:\n%s" % (key, before[key], undone["after"][key])
                                 for key in differ)


def test_a_second_undo_changes_nothing(undone):
    rc, output, recap = undone["again"]
    assert rc == 0 and [c["changed"] for c in recap.values()] == [0], output[-4000:]


def test_after_the_undo_nothing_is_translated(testbed, undone):
    [line] = readme_commands("on a LAN client")
    result = run_here(testbed, CLIENT, line)
    assert result.rc != 0 or testbed.address(GATEWAY, "wan") not in result.stdout, result.stdout
    web, _wiki = readme_commands("from outside")
    assert run_here(testbed, WAN, web).rc != 0, "a forward still answers after the undo"
