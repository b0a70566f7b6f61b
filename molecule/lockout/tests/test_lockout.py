"""After the lockout and its rollback: the controller is back in, the bad change is gone.

side_effect.yml applied a port forward of TCP 22 on the WAN interface to a LAN address where
nothing answers, with commit-confirm, and checked that the task failed saying the timer
restored the previous rules. Here: a new SSH connection from the controller to the WAN
address reaches the gateway's own sshd, the live and the persisted ruleset hold the earlier
forward and not the bad one, and no rollback timer is left running.
"""

import os
import subprocess

import pytest


@pytest.fixture(name="name")
def fixture_name(testbed):
    return testbed.one("gateways")


@pytest.fixture(name="gateway")
def fixture_gateway(testbed, name):
    return testbed.host(name)


@pytest.fixture(name="settings")
def fixture_settings(testbed, name):
    return testbed.variables(name)


def test_controller_reaches_the_gateway_over_ssh_again(settings, name):
    key = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "id_lockout")
    argv = ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    argv += settings["lockout_ssh_args"].split()
    argv += ["root@%s" % settings["testbed_addresses"]["wan"], "hostname"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == name


def test_live_ruleset_is_the_one_before_the_change(gateway, settings):
    """Both halves of the change are gone: the new LAN's masquerade and the bad forward."""
    table = gateway.check_output("nft list table inet ipmasq")
    assert settings["lockout_blackhole"] not in table
    assert settings["lockout_new_lan"] not in table
    assert "172.30.90.10 . 80" in table  # the forward from converge is still there
    assert "172.30.90.0/24" in table  # and the LAN's masquerade


def test_bad_change_was_never_persisted(gateway, settings):
    saved = gateway.file("/etc/ipmasq/ipmasq.nft")
    assert saved.exists
    assert settings["lockout_blackhole"] not in saved.content_string
    assert settings["lockout_new_lan"] not in saved.content_string
    assert "172.30.90.10 . 80" in saved.content_string


def test_the_rollback_ran_and_no_timer_is_left(gateway):
    """The host recorded what its timer did (restored), and that timer has exited."""
    outcomes = gateway.check_output(
        "find /run/ipmasq -mindepth 3 -maxdepth 3 -name outcome -exec cat {} +").split()
    assert outcomes == ["restored"], outcomes
    pids = gateway.check_output("cat /run/ipmasq/net-*/*/pid").split()
    assert pids, "no rollback timer was ever armed"
    alive = [pid for pid in pids if gateway.run("kill -0 %s" % pid).rc == 0]
    assert alive == []
