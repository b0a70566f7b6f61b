"""The example inventory (playbooks/inventory/) converged as published, with traffic.

gw-office masquerades its LAN out of ppp0 and forwards TCP 2222 to the office host's SSH
for the branch only (source 203.0.113.10/32); gw-branch SNATs its LAN to 203.0.113.10.
So a branch client reaches the office host's port 22 through gw-office's public address,
and the office host sees the branch's SNAT address; a host elsewhere on the Internet does
not get through.
"""

import os

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

OFFICE = "gw-office"
BRANCH = "gw-branch"
OFFICE_HOST = "example-office-host"
BRANCH_CLIENT = "example-branch-client"
INTERNET = "example-internet"
ECHO_PORT = 7002
# The published example, read the way Ansible reads it (group_vars and host_vars included).
EXAMPLE = AnsibleRunner(os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"],
                                     "playbooks", "inventory", "hosts.yml"))


def example(name):
    return EXAMPLE.get_variables(name)


@pytest.fixture(name="office_ssh")
def fixture_office_ssh(testbed):
    """The office host answers on port 22 with an echo server instead of its sshd."""
    host = testbed.host(OFFICE_HOST)
    host.run("systemctl stop ssh.socket ssh.service")
    with testbed.echo_server(OFFICE_HOST, tcp=[22]):
        yield


def _public(testbed, gateway):
    return testbed.address(gateway, "internet")


def test_the_example_says_what_the_test_bed_builds(testbed):
    """The inventory's own values, not copies of them, are what the traffic tests use."""
    office, branch = example(OFFICE), example(BRANCH)
    assert office["ipmasq_wan_interface"] == "ppp0"
    assert branch["ipmasq_snat_address"] == _public(testbed, BRANCH)
    ssh = [f for f in office["ipmasq_port_forwards"] if f.get("to_port") == 22]
    assert ssh and ssh[0]["source"] == branch["ipmasq_snat_address"] + "/32", ssh
    assert ssh[0]["to_address"] == testbed.address(OFFICE_HOST, "office")


def test_the_branch_reaches_the_office_ssh_from_its_snat_address(testbed, office_ssh):
    port = [f for f in example(OFFICE)["ipmasq_port_forwards"] if f.get("to_port") == 22]
    server, seen, _port = testbed.reply(BRANCH_CLIENT, "tcp", _public(testbed, OFFICE), port[0]["port"])
    assert (server, seen) == (OFFICE_HOST, example(BRANCH)["ipmasq_snat_address"])


def test_the_office_ssh_forward_is_closed_to_the_rest_of_the_internet(testbed, office_ssh):
    port = [f for f in example(OFFICE)["ipmasq_port_forwards"] if f.get("to_port") == 22]
    result = testbed.probe(INTERNET, "tcp", _public(testbed, OFFICE), port[0]["port"])
    # the gateway itself answers (nothing of its own listens there): not the office host
    assert result.rc == 1 and OFFICE_HOST not in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("client, gateway", [(OFFICE_HOST, OFFICE), (BRANCH_CLIENT, BRANCH)])
def test_each_lan_leaves_with_its_gateways_address(testbed, client, gateway):
    with testbed.echo_server(INTERNET, tcp=[ECHO_PORT]):
        server, seen, _port = testbed.reply(
            client, "tcp", testbed.address(INTERNET, "internet"), ECHO_PORT)
    assert (server, seen) == (INTERNET, _public(testbed, gateway))
