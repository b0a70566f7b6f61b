"""The nat_status module end to end without a host.

``status_run.run`` gets a stand-in for AnsibleModule; the Host methods that read the machine
return the kernel captures of tests/unit/fixtures (with counters as iptables-save -c prints
them) and record the order of the reads.
"""
import json

import pytest
import yaml


from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import host, kernel, status_run
from ansible_collections.ipmasq.gateway.plugins.modules import nat_status

from nat_helpers import fixture_text, patch_module_args

NFT_EMPTY = '{"nftables": [{"metainfo": {"version": "1.0.6"}}]}'
CONNTRACK = ("ipv4     2 tcp      6 119 TIME_WAIT src=192.168.10.23 dst=198.51.100.20 sport=40000 "
             "dport=443 src=198.51.100.20 dst=203.0.113.7 sport=443 dport=40000 [ASSURED] "
             "mark=0 use=1\n")


def counted(text):
    return "\n".join("[0:0] " + line if line.startswith("-A ") else line
                     for line in text.splitlines()) + "\n"


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.params = dict((name, spec.get("default"))
                           for name, spec in nat_status.ARGUMENT_SPEC.items())
        self.params.update(params)
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)

    def run_command(self, *args, **kwargs):
        raise AssertionError("no command may run in a unit test: %r" % (args,))

    def get_bin_path(self, *args, **kwargs):
        raise AssertionError("no binary may be looked up in a unit test: %r" % (args,))


class Lock:
    def __init__(self, machine):
        self.machine = machine

    def close(self):
        self.machine.calls.append("unlock")


class Machine:
    """What the reads see: our rules on one backend, the boot files, the conntrack table."""

    def __init__(self):
        self.dumps = {"nftables": {"nft": NFT_EMPTY}, "iptables": {4: "", 6: ""}}
        self.files = {}
        self.rollbacks = []
        self.conntrack = (100, 1000)
        self.table = CONNTRACK
        self.calls = []
        self.lock_busy = False

    def install(self, monkeypatch):
        def dump(_host, backend):
            self.calls.append("dump %s" % backend)
            return self.dumps[backend]

        def lock(_host, timeout=60):
            assert timeout == status_run.LOCK_WAIT
            if self.lock_busy:
                raise host.HostError("another ipmasq run holds /run/ipmasq.lock (waited 10s)")
            self.calls.append("lock")
            return Lock(self)

        def boot_files(backend):
            self.calls.append("boot_files")
            names = {"nftables": ["nft"], "iptables": ["ipv4", "ipv6", "ipset"]}[backend]
            return dict((k, ("/etc/ipmasq/%s" % k, self.files.get(k))) for k in names)

        def rollbacks(_host):
            self.calls.append("rollbacks")
            return self.rollbacks

        def figures():
            self.calls.append("conntrack_figures")
            return self.conntrack

        def table(_host):
            self.calls.append("conntrack_table")
            return self.table

        monkeypatch.setattr(host.Host, "dump", dump)
        monkeypatch.setattr(host.Host, "lock", lock)
        monkeypatch.setattr(host.Host, "boot_files", staticmethod(boot_files))
        monkeypatch.setattr(host.Host, "rollbacks", rollbacks)
        monkeypatch.setattr(host.Host, "conntrack_figures", staticmethod(figures))
        monkeypatch.setattr(host.Host, "conntrack_table", table)
        monkeypatch.setattr(host.Host, "resolve_backend", lambda _host, requested: "nftables")


@pytest.fixture
def machine(monkeypatch):
    fake = Machine()
    fake.install(monkeypatch)
    return fake


def run(**params):
    module = FakeModule(**params)
    return status_run.run(module), module


def with_nft_rules(machine):
    machine.dumps["nftables"] = {"nft": fixture_text("gateway.nft.json")}


def with_iptables_rules(machine):
    machine.dumps["iptables"] = {4: counted(fixture_text("gateway.iptables-save")),
                                 6: counted(fixture_text("gateway.ip6tables-save"))}


# ---------------------------------------------------------------- which backend

def test_auto_reads_the_backend_that_holds_our_rules(machine):
    with_iptables_rules(machine)
    result, _module = run()
    assert result["backend"] == "iptables" and result["rules"]["total"] == 26
    assert machine.calls[:3] == ["lock", "dump nftables", "dump iptables"]
    with_nft_rules(machine)
    machine.calls = []
    result, _module = run()
    assert result["backend"] == "nftables" and result["rules"]["total"] == 26
    assert "dump iptables" not in machine.calls  # found in the first place looked


def test_auto_on_a_host_without_our_rules_takes_what_nat_rules_would(machine):
    result, _module = run()
    assert result["backend"] == "nftables" and result["rules"]["total"] == 0
    assert result["changed"] is False


def test_a_backend_given_is_read_even_when_empty(machine):
    with_nft_rules(machine)
    result, _module = run(backend="iptables")
    assert result["backend"] == "iptables" and result["rules"]["total"] == 0
    assert machine.calls.count("dump nftables") == 0


# ---------------------------------------------------------------- the lock

def test_the_lock_covers_the_reads_of_rules_files_and_rollbacks_only(machine):
    with_nft_rules(machine)
    run()
    assert machine.calls == ["lock", "dump nftables", "boot_files", "rollbacks", "unlock",
                             "conntrack_figures", "conntrack_table"]


def test_a_busy_lock_is_read_around_and_said(machine):
    machine.lock_busy = True
    result, module = run()
    assert "lock" not in machine.calls and "dump nftables" in machine.calls
    [note] = [f for f in result["findings"] if f["topic"] == "lock"]
    assert note["severity"] == "info" and "read without it" in note["message"]
    assert module.warnings == []


def test_top_zero_does_not_read_the_connection_table(machine):
    result, _module = run(top=0)
    assert "conntrack_table" not in machine.calls
    assert result["conntrack"]["count"] == 100 and result["top_sources"] == []


# ---------------------------------------------------------------- warnings and output

def test_warnings_are_ansible_warnings_too(machine):
    with_nft_rules(machine)
    machine.conntrack = (950, 1000)
    machine.rollbacks = [("4242-1a2b3c4d5e6f", 4e9, None)]
    result, module = run()
    warned = [f["message"] for f in result["findings"] if f["severity"] == "warning"]
    assert sorted(module.warnings) == sorted(warned)
    assert len(warned) == 2  # conntrack 95%, and the pending rollback; no boot file is a note
    assert result["drift"]["differs"] is None


def test_a_boot_file_that_matches_is_no_drift(machine):
    with_nft_rules(machine)
    machine.files["nft"] = fixture_text("gateway.nft.txt") + kernel.END_MARKER + "\n"
    result, module = run()
    assert result["drift"]["differs"] is False and module.warnings == []


def test_prometheus_only_when_asked(machine):
    result, _module = run()
    assert "prometheus" not in result
    result, _module = run(prometheus=True)
    assert "ipmasq_nf_conntrack_entries 100\n" in result["prometheus"]


def test_check_mode_is_the_same_read(machine):
    with_nft_rules(machine)
    normal, _module = run()
    checked, _module = run(check_mode=True)
    assert normal == checked


@pytest.mark.parametrize("params, message", [
    ({"conntrack_threshold": 0}, "conntrack_threshold: must be a percentage"),
    ({"conntrack_threshold": 100.5}, "conntrack_threshold: must be a percentage"),
    ({"top": -1}, "top: must be 0"),
    ({"lan_networks": ["192.168.10.0/24", "banana"]}, "lan_networks[1]: not a network"),
    ({"lan_networks": ["fe80::/64%eth0"]}, "lan_networks[0]: not a network (a zone id"),
])
def test_bad_options_fail_before_any_read(machine, params, message):
    result, _module = run(**params)
    assert result["failed"] is True and result["msg"].startswith(message)
    assert machine.calls == []


def test_a_host_error_fails_the_task(machine, monkeypatch):
    def broken(_host, backend):
        raise host.HostError("nft -j list table inet ipmasq failed: Operation not permitted")
    monkeypatch.setattr(host.Host, "dump", broken)
    result, _module = run()
    assert result == {"failed": True, "changed": False,
                      "msg": "nft -j list table inet ipmasq failed: Operation not permitted"}


def test_main_returns_json(machine, capsys):
    with patch_module_args({"top": 3}):
        with pytest.raises(SystemExit) as exc:
            nat_status.main()
    out = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0 and out["changed"] is False and out["backend"] == "nftables"


# ---------------------------------------------------------------- the docs

def test_documentation_matches_the_argument_spec():
    options = yaml.safe_load(nat_status.DOCUMENTATION)["options"]
    assert sorted(options) == sorted(nat_status.ARGUMENT_SPEC)
    for name, spec in nat_status.ARGUMENT_SPEC.items():
        for key in ("type", "default", "choices", "elements"):
            assert options[name].get(key) == spec.get(key), (name, key)


def test_every_returned_key_is_documented(machine):
    with_nft_rules(machine)
    result, _module = run(prometheus=True)
    documented = set(yaml.safe_load(nat_status.RETURN))
    assert set(result) - {"changed"} == documented
