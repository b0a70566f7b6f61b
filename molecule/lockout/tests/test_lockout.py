"""After the lockouts and their rollbacks: the controller is back in, the bad changes are gone.

side_effect.yml applied a port forward of TCP 22 on the WAN interface to a LAN address where
nothing answers, then an ipmasq_wan_input without SSH, each with commit-confirm, and checked
that each task failed saying the timer restored the previous rules. Last it applied an
ipmasq_wan_input that lists SSH (lockout_wan_input), which was confirmed. Here: a new SSH
connection from the controller to the WAN address reaches the gateway's own sshd, the live
and the persisted ruleset hold the earlier forward and the confirmed input filter and none of
the bad changes, the filter lets the controller reach the listed ports only, and no rollback
timer is left running.
"""

import os
import socket
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


def test_live_ruleset_is_the_one_before_the_change(testbed, name, settings):
    """Both halves of the change are gone: the new LAN's masquerade and the bad forward."""
    table = testbed.nft_listing(name)
    assert settings["lockout_blackhole"] not in table
    assert settings["lockout_new_lan"] not in table
    assert "172.30.90.10 . 80" in table  # the forward from converge is still there
    assert "172.30.90.0/24" in table  # and the LAN's masquerade


def test_bad_change_was_never_persisted(testbed, gateway, settings):
    saved = gateway.file("/etc/ipmasq/ipmasq.nft")
    assert saved.exists
    text = testbed.without_counters(saved.content_string)
    assert settings["lockout_blackhole"] not in text
    assert settings["lockout_new_lan"] not in text
    assert "172.30.90.10 . 80" in text
    assert 'iifname "wan0" tcp dport 22 accept' in text  # the confirmed filter


def _answers(address, port, timeout=3.0):
    """Whether a TCP connection from the controller gets the echo server's line."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(200).split()[0].decode() == "lockout-gw"
    except OSError:
        return False


def test_the_confirmed_input_filter_lets_in_only_the_listed_ports(testbed, gateway, settings, name):
    table = testbed.nft_listing(name, "chain inet ipmasq input")
    assert 'iifname "wan0" tcp dport 22 accept' in table and 'iifname "wan0" drop' in table, table
    listed = [entry["port"] for entry in settings["lockout_wan_input"] if entry["port"] != 22]
    unlisted = 8443
    address = settings["testbed_addresses"]["wan"]
    with testbed.echo_server(name, tcp=listed + [unlisted]):
        for port in listed:
            assert _answers(address, port), "listed port %d does not answer" % port
        assert not _answers(address, unlisted), "unlisted port %d answers from the WAN" % unlisted
        # the same server answers on the gateway itself: the filter dropped it, nothing else
        assert gateway.run("ipmasq-probe tcp 127.0.0.1 %s --timeout 2", str(unlisted)).rc == 0


def test_the_rollback_ran_and_no_timer_is_left(gateway):
    """The host recorded what each timer did (restored, twice; the confirmed change left no
    record), and every timer has exited."""
    outcomes = gateway.check_output(
        "for f in /run/ipmasq/net-*/*/outcome; do cat \"$f\"; echo; done").split()
    assert outcomes == ["restored", "restored"], outcomes
    pids = gateway.check_output("cat /run/ipmasq/net-*/*/pid").split()
    assert pids, "no rollback timer was ever armed"
    alive = [pid for pid in pids if gateway.run("kill -0 %s" % pid).rc == 0]
    assert alive == []
