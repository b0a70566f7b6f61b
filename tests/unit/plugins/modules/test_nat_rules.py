"""The nat_rules module end to end without a host.

``plan.run`` gets a stand-in for AnsibleModule. Only the Host methods that reach the machine are
replaced: ``read`` returns a State built here, ``apply`` records the commands and moves that
State the way the kernel would, ``write_files``/``conntrack_delete`` record, and ``lock`` and
``persist_changes`` (a file lock in /run, files in /etc) work on memory. ``Host.restore`` is
the real one, on top of these.
"""
import contextlib
import copy
import json
import re

import pytest
import yaml

from ansible_collections.ipmasq.gateway.plugins.doc_fragments._nat import ModuleDocFragment
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import (
    argspec, diff, host, iptables, model, nft, plan)
from ansible_collections.ipmasq.gateway.plugins.modules import nat_rules

from nat_helpers import (
    CODECS, apply_commands, fixture_config, fixture_text, patch_module_args, reparse, ruleset_of,
    state_of)

CONFIG = {
    "masquerade": [{"source": "192.168.10.0/24", "out_interface": "ppp0", "comment": "office"}],
    "port_forwards": [
        {"in_interface": "ppp0", "port": 8080, "to_address": "192.168.10.5", "to_port": 80},
        {"in_interface": "ppp0", "protocol": "tcp_udp", "port": "5000-5001",
         "to_address": "fd00::6"}],
    "forward": [{"in_interface": "ppp0", "ct_state": ["established", "related"]},
                {"in_interface": "ppp0", "action": "drop"}],
}


REAL_WRITE_FILES = host.Host.write_files


class FakeModule:
    """What plan.run and Host use of AnsibleModule."""

    def __init__(self, check_mode=False, diff=False, **params):
        # every option at its argument-spec default, as AnsibleModule fills them
        self.params = dict((name, spec.get("default")) for name, spec in argspec.ARGUMENT_SPEC.items())
        self.params["backend"] = "nftables"
        self.params.update(params)
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)

    def run_command(self, *args, **kwargs):
        raise AssertionError("no command may run in a unit test: %r" % (args,))

    def get_bin_path(self, *args, **kwargs):
        raise AssertionError("no binary may be looked up in a unit test: %r" % (args,))


class FakeHost:
    """The machine behind Host: our rules per backend, the persisted files, and a call log."""

    def __init__(self, states=None):
        self.states = {"nftables": nft.empty_state(), "iptables": iptables.empty_state()}
        self.states.update(states or {})
        self.files = {}
        self.calls = []
        self.fail_apply = 0
        self.interfaces = {}  # {interface: [address]}, as ``ip -j addr show`` would tell
        # installed, of the tools looked up with required=False
        self.tools = {"ipset", "nft", "iptables-save", "nfct"}
        self.absent_interfaces = set()  # the interfaces /sys/class/net does not show
        self.ruleset_json = '{"nftables": []}'  # nft -j list chains (and tables)
        self.filter_saves = {}  # {family: iptables-save -t filter text}
        self.route_table = []  # ip -j route show
        self.saves = {}  # {family: iptables-save text}, for adopt
        self.half_applied = None  # the state a failed apply left behind

    def addresses(self, _host, interfaces):
        if interfaces:
            self.calls.append(("addresses", list(interfaces)))
        return dict((name, tuple(self.interfaces.get(name, ()))) for name in interfaces)

    def bin_path(self, _host, name, required=True):
        if name in self.tools:
            return "/usr/sbin/" + name
        assert not required, "the module would fail here: %s is missing" % name
        return None

    def missing_interfaces(self, names):
        return [name for name in names if name in self.absent_interfaces]

    def read(self, _host, backend):
        self.calls.append(("read", backend))
        return self.states[backend]

    # the neighbourhood (coexist.Site): by default a host with nothing of anyone else's
    def nft_list(self, _host, *what):
        if what == ("chains",):
            return self.ruleset_json
        return self.ruleset_json if what[0] == "table" else None

    def has_iptables(self, _host):
        return True

    def save_filter(self, _host, family, variant=None):
        return self.filter_saves.get(family)

    def iptables_origin(self, _host):
        return "iptables-nft"

    def iptables_save(self, _host, family):
        return self.saves.get(family, "")

    def routes(self, _host):
        return self.route_table

    def stale_persist_files(self, backend):
        other = "iptables" if backend == "nftables" else "nftables"
        names = list(host.PERSIST_FILES[other].values()) + (
            [host.PERSIST_IPSET, host.PERSIST_NFCT] if other == "iptables" else [])
        return dict((path, None) for path in self.files
                    if path.rsplit("/", 1)[-1] in names)

    def apply(self, _host, backend, commands):
        self.calls.append(("apply", backend, list(commands)))
        codec = CODECS[backend]
        if commands and self.fail_apply:
            # Fail half way, the way ip6tables-restore fails after iptables-restore went in:
            # what was applied stays applied, and only a restore takes it back.
            self.fail_apply -= 1
            self.states[backend] = apply_commands(codec, self.states[backend],
                                                  commands[:max(1, len(commands) // 2)])
            self.half_applied = self.states[backend]
            raise host.HostError("apply failed (rc=1): Error: injected")
        self.states[backend] = apply_commands(codec, self.states[backend], commands)

    def persist_changes(self, _host, files):
        return sorted(path for path, text in files.items() if self.files.get(path) != text)

    def write_files(self, _host, files, paths):
        self.calls.append(("write_files", sorted(paths)))
        for path in paths:
            if files[path] is None:
                self.files.pop(path, None)
            else:
                self.files[path] = files[path]

    def conntrack_delete(self, _host, filters):
        self.calls.append(("conntrack_delete", [list(f) for f in filters]))
        return [" ".join(f) for f in filters]

    def changing_calls(self):
        """Calls that would change the machine (the module also calls them with nothing)."""
        return [c for c in self.calls if c[0] not in ("read", "addresses") and c[-1]]


def _delegate(fake, name):
    def method(self, *args, **kwargs):
        return getattr(fake, name)(self, *args, **kwargs)
    return method


@pytest.fixture
def machine(monkeypatch):
    fake = FakeHost()
    # Host methods receive the Host first; FakeHost's take it as their first argument.
    for name in ("read", "apply", "persist_changes", "write_files", "conntrack_delete",
                 "addresses", "nft_list", "has_iptables", "save_filter", "iptables_origin",
                 "routes", "iptables_save"):
        monkeypatch.setattr(host.Host, name, _delegate(fake, name))
    monkeypatch.setattr(host.Host, "legacy_families", staticmethod(lambda: []))
    monkeypatch.setattr(host.Host, "stale_persist_files", staticmethod(fake.stale_persist_files))
    monkeypatch.setattr(host.Host, "_bin", _delegate(fake, "bin_path"))
    monkeypatch.setattr(host.Host, "missing_interfaces", staticmethod(fake.missing_interfaces))
    monkeypatch.setattr(host.Host, "lock", lambda self, timeout=60: contextlib.nullcontext())
    monkeypatch.setattr(host.Host, "rollbacks", lambda self: [])
    monkeypatch.setattr(host.Host, "forget_failed_rollbacks", lambda self: None)
    return fake


@pytest.fixture
def no_host(monkeypatch):
    """For rendered and parsed: creating a Host at all is a failure."""
    def refuse(*args, **kwargs):
        raise AssertionError("rendered and parsed must not contact the host")
    monkeypatch.setattr(plan, "Host", refuse)


def run(**kw):
    return plan.run(FakeModule(**kw))


# ---------------------------------------------------------------- rendered / parsed

@pytest.mark.parametrize("backend, codec", [("nftables", nft), ("iptables", iptables),
                                            ("auto", nft)])
def test_rendered_returns_the_full_script_without_a_host(no_host, backend, codec):
    result = run(state="rendered", backend=backend, config=CONFIG)
    assert result == {
        "changed": False, "backend": "iptables" if codec is iptables else "nftables",
        "rendered": codec.render_full(state_of(codec, CONFIG)).splitlines()}


def test_parsed_reads_running_config_without_a_host(no_host):
    result = run(state="parsed", running_config=fixture_text("gateway.nft.json"))
    assert result["changed"] is False and set(result) == {"changed", "parsed", "parse_report"}
    assert result["parsed"] == model.ruleset_to_dict(ruleset_of(fixture_config("gateway")))
    assert result["parse_report"]["unreadable"] == []


def test_parsed_bad_text_fails_cleanly(no_host):
    result = run(state="parsed", running_config="*nat\n-A POSTROUTING -o ppp0 -j\nCOMMIT\n")
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("running_config: cannot parse:")
    assert "line 2" in result["msg"] and "-j" in result["msg"]


def test_parsed_warns_about_a_rule_it_cannot_express(no_host):
    module = FakeModule(state="parsed",
                        running_config="*nat\n-A POSTROUTING -o ppp0 -j LOG\nCOMMIT\n")
    result = plan.run(module)
    assert result.get("failed") is not True
    assert result["parse_report"]["unreadable"] == [{
        "line": 2, "rule": "-A POSTROUTING -o ppp0 -j LOG",
        "reason": "target LOG in POSTROUTING: the model holds masquerade and SNAT there"}]
    assert any(w.startswith("running_config line 2: not read") for w in module.warnings)


def test_rendered_then_parsed_is_the_config(no_host):
    for backend in ("nftables", "iptables"):
        rendered = run(state="rendered", backend=backend, config=CONFIG)["rendered"]
        parsed = run(state="parsed", running_config="\n".join(rendered))["parsed"]
        assert ruleset_of(parsed) == ruleset_of(CONFIG)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("state", ["merged", "replaced", "overridden", "deleted", "gathered",
                                   "rendered", "parsed"])
def test_bad_config_fails_naming_the_field_before_any_host_contact(machine, state):
    config = {"port_forwards": [{"in_interface": "ppp0", "port": 70000,
                                 "to_address": "192.168.10.5"}]}
    result = run(state=state, config=config, running_config="")
    assert result["failed"] is True and result["changed"] is False
    assert "port_forwards[0].port" in result["msg"] and "70000" in result["msg"]
    assert machine.calls == []


# ---------------------------------------------------------------- changing states

@pytest.mark.parametrize("backend", sorted(CODECS))
def test_merged_applies_persists_and_then_changes_nothing(machine, backend):
    first = run(backend=backend, config=CONFIG)
    codec = CODECS[backend]
    assert first["changed"] is True and "failed" not in first
    assert first["backend"] == backend
    assert first["before"] == model.ruleset_to_dict(model.empty_ruleset())
    assert first["after"] == model.ruleset_to_dict(ruleset_of(CONFIG))
    applied = [c for c in machine.calls if c[0] == "apply"]
    assert applied == [("apply", backend, first["commands"])]
    assert first["commands"] == codec.render_changes(codec.empty_state(), state_of(codec, CONFIG))
    assert first["persisted"] == sorted(machine.files)
    assert ("write_files", first["persisted"]) in machine.calls
    assert first["summary"]["port_forwards"] == {"added": 3, "removed": 0, "unchanged": 0}
    assert first["conntrack_deleted"] == []

    machine.calls.clear()
    second = run(backend=backend, config=CONFIG)
    assert second["changed"] is False and second["commands"] == [] and second["persisted"] == []
    # no change, no diff mode: the counts, not the whole rulesets
    assert "before" not in second and "after" not in second
    assert second["summary"]["port_forwards"] == {"added": 0, "removed": 0, "unchanged": 3}
    assert second["summary"]["forward"] == {"added": 0, "removed": 0, "unchanged": 2}
    assert machine.changing_calls() == []
    # diff mode asks for them even when nothing changes
    third = run(backend=backend, config=CONFIG, diff=True)
    assert third["changed"] is False and "diff" not in third
    assert third["before"] == third["after"] == first["after"]
    assert machine.changing_calls() == []


@pytest.mark.parametrize("backend", sorted(CODECS))
def test_check_mode_applies_nothing_and_predicts_the_real_run(machine, backend):
    codec = CODECS[backend]
    machine.states[backend] = reparse(codec, state_of(
        codec, {"port_forwards": [dict(CONFIG["port_forwards"][0], to_port=81)]}))
    start = machine.states[backend]
    checked = run(backend=backend, config=CONFIG, check_mode=True, diff=True)
    assert machine.changing_calls() == []
    assert machine.states[backend] == start
    assert checked["changed"] is True and checked["commands"]
    real = run(backend=backend, config=CONFIG, diff=True)
    applied = [c for c in machine.calls if c[0] == "apply"]
    assert applied == [("apply", backend, checked["commands"])]
    # everything but the flush report is the same; check mode only predicts that one
    assert checked["conntrack_deleted"] == real["conntrack_deleted"] == [
        "-f ipv4 -p tcp --orig-port-dst 8080 --dst-nat"]
    assert checked == real


def test_diff_mode_shows_rules_before_and_after(machine):
    machine.states["iptables"] = reparse(iptables, state_of(
        iptables, {"masquerade": CONFIG["masquerade"]}))
    result = run(backend="iptables", state="overridden",
                 config={"masquerade": [dict(CONFIG["masquerade"][0], comment="lan")]}, diff=True)
    assert result["diff"] == {
        "before": "postrouting: -s 192.168.10.0/24 -o ppp0 -m comment --comment office "
                  "-j MASQUERADE\n",
        "after": "postrouting: -s 192.168.10.0/24 -o ppp0 -m comment --comment lan "
                 "-j MASQUERADE\n",
        "before_header": "iptables (owned rules)", "after_header": "iptables (owned rules)"}
    again = run(backend="iptables", state="overridden",
                config={"masquerade": [dict(CONFIG["masquerade"][0], comment="lan")]}, diff=True)
    assert "diff" not in again and again["changed"] is False


STATE_CASES = [
    ("merged", {"snat": [{"source": "10.20.0.0/16", "out_interface": "eth0",
                          "to_address": "203.0.113.10"}]}),
    ("replaced", {"port_forwards": [{"in_interface": "ppp0", "port": 2222,
                                     "to_address": "192.168.10.7", "to_port": 22}]}),
    ("overridden", {"forward": [{"in_interface": "ppp0", "action": "drop"}]}),
    ("deleted", {"port_forwards": [{"in_interface": "ppp0", "port": 8080}]}),
    ("deleted", {"forward": []}),
    ("deleted", None),
]


@pytest.mark.parametrize("backend", sorted(CODECS))
@pytest.mark.parametrize("state, config", STATE_CASES)
def test_every_state_then_an_idempotent_second_run(machine, backend, state, config):
    codec = CODECS[backend]
    machine.states[backend] = reparse(codec, state_of(codec, CONFIG))
    first = run(backend=backend, state=state, config=copy.deepcopy(config))
    assert first["changed"] is True and first["commands"]
    wanted = model.build_config(config, partial=state == "deleted")
    expected = diff.after_state(state, ruleset_of(CONFIG), wanted)
    assert first["after"] == model.ruleset_to_dict(expected)
    gathered = run(backend=backend, state="gathered")
    assert gathered == {"changed": False, "backend": backend,
                        "gathered": model.ruleset_to_dict(expected)}
    machine.calls.clear()
    second = run(backend=backend, state=state, config=copy.deepcopy(config))
    assert second["changed"] is False and second["commands"] == []
    assert machine.changing_calls() == []


HAIRPIN = {"port_forwards": [
    {"in_interface": "ppp0", "port": 8080, "to_address": "192.168.10.5", "to_port": 80,
     "hairpin": True},
    {"in_interface": "ppp0", "port": 2222, "to_address": "192.168.10.7", "to_port": 22,
     "source": "198.51.100.0/24", "hairpin": True}]}


@pytest.mark.parametrize("backend", sorted(CODECS))
def test_hairpin_sets_follow_the_interface_address_at_every_run(machine, backend):
    codec = CODECS[backend]
    machine.interfaces = {"ppp0": ["203.0.113.7"], "eth1": ["192.168.10.1"]}
    first = run(backend=backend, config=HAIRPIN)
    assert first["changed"] is True
    assert ("addresses", ["ppp0"]) in machine.calls  # only the interfaces hairpin needs
    assert codec.address_sets(machine.states[backend]) == {
        ("hp4_ppp0" if codec is nft else "ipmasq-hp4-ppp0"): frozenset(["203.0.113.7"])}
    assert run(backend=backend, config=HAIRPIN)["changed"] is False
    # PPP came back with another address: check mode shows the element change, and only it
    machine.interfaces["ppp0"] = ["203.0.113.99"]
    checked = run(backend=backend, config=HAIRPIN, check_mode=True, diff=True)
    assert checked["changed"] is True
    assert checked["summary"]["port_forwards"] == {"added": 0, "removed": 0, "unchanged": 2}
    if codec is nft:
        assert checked["commands"] == [
            "delete element inet ipmasq hp4_ppp0 { 203.0.113.7 }",
            "add element inet ipmasq hp4_ppp0 { 203.0.113.99 }"]
    else:
        assert checked["commands"] == [
            "# ipset restore", "del ipmasq-hp4-ppp0 203.0.113.7",
            "add ipmasq-hp4-ppp0 203.0.113.99"]
    name = "hp4_ppp0" if codec is nft else "ipmasq-hp4-ppp0"
    assert "set %s: 203.0.113.7\n" % name in checked["diff"]["before"]
    assert "set %s: 203.0.113.99\n" % name in checked["diff"]["after"]
    real = run(backend=backend, config=HAIRPIN, diff=True)
    assert real == checked
    assert run(backend=backend, config=HAIRPIN)["changed"] is False
    # no hairpin, no address lookup
    machine.calls.clear()
    run(backend=backend, config=CONFIG, state="overridden")
    assert not [c for c in machine.calls if c[0] == "addresses"]
    assert codec.address_sets(machine.states[backend]) == {}


@pytest.mark.parametrize("check_mode", [False, True])
def test_hairpin_on_iptables_without_ipset_fails_before_any_change(machine, check_mode):
    machine.tools = set()
    machine.interfaces = {"ppp0": ["203.0.113.7"]}
    result = run(backend="iptables", config=HAIRPIN, check_mode=check_mode)
    assert result["failed"] is True and result["changed"] is False
    assert "ipset" in result["msg"] and "nothing was changed" in result["msg"]
    assert machine.changing_calls() == []
    # without hairpin the iptables backend does not need it
    assert "failed" not in run(backend="iptables", config=CONFIG)


def test_gathered_reads_what_the_kernel_printed(machine):
    machine.states["nftables"] = nft.parse(fixture_text("gateway.nft.json"))
    machine.states["iptables"] = iptables.combine(
        iptables.parse_save(fixture_text("gateway.iptables-save"), 4),
        iptables.parse_save(fixture_text("gateway.ip6tables-save"), 6))
    for backend in ("nftables", "iptables"):
        result = run(backend=backend, state="gathered")
        assert result["gathered"] == model.ruleset_to_dict(ruleset_of(fixture_config("gateway")))
        assert ruleset_of(result["gathered"]) == ruleset_of(fixture_config("gateway"))
    assert machine.changing_calls() == []


@pytest.mark.parametrize("backend", sorted(CODECS))
@pytest.mark.parametrize("have", [None, {"masquerade": CONFIG["masquerade"],
                                         "forward": CONFIG["forward"][:1]}],
                         ids=["from-nothing", "from-rules"])
def test_a_failed_apply_restores_and_reports(machine, backend, have):
    codec = CODECS[backend]
    if have:
        machine.states[backend] = reparse(codec, state_of(codec, have))
    before = machine.states[backend]
    machine.fail_apply = 1
    result = run(backend=backend, config=CONFIG)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("apply failed, previous rules left in place:")
    assert "injected" in result["msg"]
    # the failed apply did change the host; the restore took it back
    assert machine.half_applied is not None and machine.half_applied != before
    assert machine.states[backend] == before
    assert not any(c[0] in ("write_files", "conntrack_delete") for c in machine.calls)


def test_changed_forward_flushes_only_its_conntrack_entries(machine):
    run(config=CONFIG)
    machine.calls.clear()
    changed = copy.deepcopy(CONFIG)
    changed["port_forwards"][0]["to_address"] = "192.168.10.9"
    result = run(config=changed)
    assert result["conntrack_deleted"] == ["-f ipv4 -p tcp --orig-port-dst 8080 --dst-nat"]
    assert ("conntrack_delete", [["-f", "ipv4", "-p", "tcp", "--orig-port-dst", "8080",
                                  "--dst-nat"]]) in machine.calls


def test_conntrack_flush_none_leaves_conntrack_alone(machine):
    run(config=CONFIG)
    machine.calls.clear()
    result = run(state="overridden", config={"masquerade": CONFIG["masquerade"]},
                 conntrack_flush="none")
    assert result["changed"] is True and result["conntrack_deleted"] == []
    assert ("conntrack_delete", []) in machine.calls


@pytest.mark.parametrize("backend, tool", [("nftables", "nft"), ("iptables", "iptables-save")])
def test_deleting_from_a_backend_without_its_tools_is_nothing_to_do(machine, backend, tool):
    """playbooks/remove.yml deletes from both backends; a host has the tools of one."""
    machine.tools.discard(tool)
    result = run(state="deleted", backend=backend)
    assert result["changed"] is False and result["commands"] == [] and "failed" not in result
    assert machine.calls == []


def test_an_interface_the_host_lacks_is_a_warning_and_the_rules_apply(machine):
    machine.absent_interfaces.add("ppp0")
    module = FakeModule(config=CONFIG)
    result = plan.run(module)
    assert result["changed"] is True and "failed" not in result
    [warning] = module.warnings
    assert warning.startswith("interface ppp0 does not exist on this host (named by "
                              "masquerade[0].out_interface, port_forwards[0].in_interface, "
                              "port_forwards[1].in_interface and 2 more)"), warning
    deleted = FakeModule(state="deleted", config={"masquerade": CONFIG["masquerade"]})
    plan.run(deleted)
    assert deleted.warnings == []


def test_persist_false_writes_no_files(machine):
    result = run(config=CONFIG, persist=False)
    assert result["changed"] is True and result["persisted"] == []
    assert machine.files == {}


def test_persist_false_does_not_create_the_persist_directory(machine, monkeypatch, tmp_path):
    persist_dir = tmp_path / "etc-ipmasq"
    monkeypatch.setattr(host, "PERSIST_DIR", str(persist_dir))
    monkeypatch.setattr(host.Host, "write_files", REAL_WRITE_FILES)
    result = run(config=CONFIG, persist=False)
    assert result["changed"] is True and result["persisted"] == []
    assert not persist_dir.exists()


def test_a_missing_persist_file_alone_is_a_change(machine):
    run(config=CONFIG)
    machine.files.clear()
    result = run(config=CONFIG)
    assert result["changed"] is True and result["commands"] == []
    assert result["persisted"] == ["/etc/ipmasq/ipmasq.nft"]


# ---------------------------------------------------------------- the module file itself

def _main(args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        nat_rules.main()
    return info.value.code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("config", [CONFIG, json.dumps(CONFIG)], ids=["dict", "json-text"])
def test_main_rendered(no_host, capsys, config):
    """config also takes JSON text: a big config read with lookup('file') needs no
    from_json, which costs the controller more than the module decoding it."""
    code, out = _main({"state": "rendered", "backend": "iptables", "config": config}, capsys)
    assert code == 0 and out["changed"] is False
    assert out["rendered"] == iptables.render_full(state_of(iptables, CONFIG)).splitlines()


def test_main_fills_unset_suboptions_and_they_validate(no_host, capsys):
    code, out = _main({"state": "rendered", "config": {"port_forwards": [
        {"in_interface": "ppp0", "port": "8080", "to_address": "192.168.10.5"}]}}, capsys)
    assert code == 0
    assert '\t\telements = { "ppp0" . tcp . 8080 : 192.168.10.5 . 8080 }' in out["rendered"]


def test_main_leaves_entries_to_the_model_which_names_them(no_host, capsys):
    code, out = _main({"state": "rendered", "config": {"port_forwards": [
        {"in_interface": "ppp0", "port": 80, "to_address": "192.168.10.5"},
        {"in_interface": "ppp0", "port": 81, "to_address": "192.168.10.5", "hairpn": True}]}},
        capsys)
    assert code == 1 and out["failed"] is True
    assert "port_forwards[1]: unknown field hairpn" in out["msg"]
    # the entries are echoed back as given, without a null for every unset field
    assert out["invocation"]["module_args"]["config"]["port_forwards"][0] == {
        "in_interface": "ppp0", "port": 80, "to_address": "192.168.10.5"}


def test_main_parsed_needs_running_config(no_host, capsys):
    code, out = _main({"state": "parsed"}, capsys)
    assert code == 1 and out["failed"] is True and "running_config" in out["msg"]


def test_main_reports_bad_config_as_failed(no_host, capsys):
    code, out = _main({"state": "rendered", "config": {"masquerade": [
        {"source": "192.168.1.1/24", "out_interface": "ppp0"}]}}, capsys)
    assert code == 1 and out["failed"] is True
    assert "masquerade[0].source" in out["msg"] and "192.168.1.1/24" in out["msg"]


def _doc_options():
    options = yaml.safe_load(nat_rules.DOCUMENTATION)["options"]
    options.update(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"])
    return options


def _compare(doc, spec, where):
    assert sorted(doc) == sorted(spec), where
    for name, opt in spec.items():
        d = doc[name]
        assert d.get("type", "str") == opt.get("type", "str"), "%s.%s" % (where, name)
        assert d.get("choices") == opt.get("choices"), "%s.%s" % (where, name)
        assert d.get("default") == opt.get("default"), "%s.%s" % (where, name)
        assert d.get("elements") == opt.get("elements"), "%s.%s" % (where, name)
        if "options" in opt:
            _compare(d["suboptions"], opt["options"], "%s.%s" % (where, name))


def test_documentation_matches_the_argument_spec():
    _compare(_doc_options(), argspec.ARGUMENT_SPEC, "options")


def test_documented_helpers_are_the_ones_the_model_accepts():
    text = _doc_options()["config"]["suboptions"]["helpers"]["suboptions"]["helper"]["description"]
    assert re.findall(r"V\(([^)]+)\)", text) == sorted(model.HELPER_PROTOCOLS)


# ---------------------------------------------------------------- other managers, switches

DOCKER_FILTER = ("*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n"
                 "-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\nCOMMIT\n")
DOCKER_NFT = json.dumps({"nftables": [
    {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "type": "filter",
               "hook": "forward", "prio": 0, "policy": "drop"}},
    {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER"}},
    {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD",
              "expr": [{"jump": {"target": "DOCKER-USER"}}]}}]})
V4_CONFIG = {"masquerade": [CONFIG["masquerade"][0]],
             "port_forwards": [CONFIG["port_forwards"][0]]}


def _docker_host(machine):
    machine.ruleset_json = DOCKER_NFT
    machine.filter_saves = {4: DOCKER_FILTER}
    machine.route_table = [{"dst": "192.168.10.0/24", "dev": "lan0"}]


@pytest.mark.parametrize("check_mode", [False, True])
def test_nftables_under_a_forward_drop_fails_before_any_change(machine, check_mode):
    _docker_host(machine)
    result = run(backend="nftables", config=V4_CONFIG, check_mode=check_mode)
    assert result["failed"] is True and result["changed"] is False
    assert "table ip filter chain FORWARD (Docker) drops it by its policy (drop)" in result["msg"]
    assert "DOCKER-USER -i lan0 -o ppp0 -j ACCEPT" in result["msg"]
    assert machine.changing_calls() == []


def test_warn_goes_ahead_and_says_so(machine):
    _docker_host(machine)
    module = FakeModule(backend="nftables", config=V4_CONFIG, foreign_forward_drop="warn")
    result = plan.run(module)
    assert result["changed"] is True and result["backend"] == "nftables"
    assert result["foreign_forward_drop"] in module.warnings


def test_auto_takes_the_iptables_backend_under_dockers_forward_drop(machine):
    _docker_host(machine)
    result = run(backend="auto", config=V4_CONFIG)
    assert result["backend"] == "iptables" and "foreign_forward_drop" not in result
    assert [c[1] for c in machine.calls if c[0] == "apply"] == ["iptables"]


def test_auto_keeps_the_backend_that_holds_our_rules(machine):
    machine.states["iptables"] = reparse(iptables, state_of(iptables, V4_CONFIG))
    machine.ruleset_json = json.dumps({"nftables": [
        {"chain": {"family": "ip", "table": "nat", "name": "IPMASQ-POSTROUTING"}}]})
    result = run(backend="auto", config=V4_CONFIG, persist=False)
    assert result["backend"] == "iptables" and result["changed"] is False


@pytest.mark.parametrize("old, new", [("iptables", "nftables"), ("nftables", "iptables")])
def test_a_backend_switch_removes_the_old_rules_after_the_new_are_in(machine, old, new):
    machine.states[old] = reparse(CODECS[old], state_of(CODECS[old], V4_CONFIG))
    if old == "iptables":
        machine.ruleset_json = json.dumps({"nftables": [
            {"chain": {"family": "ip", "table": "nat", "name": "IPMASQ-POSTROUTING"}}]})
    machine.files = {"/etc/ipmasq/" + name: "old\n" for name in
                     host.PERSIST_FILES[old].values()}
    checked = run(backend=new, config=V4_CONFIG, check_mode=True, diff=True)
    assert machine.changing_calls() == []
    real = run(backend=new, config=V4_CONFIG, diff=True)
    assert checked == real
    assert real["backend_switch"]["from"] == old and real["backend_switch"]["to"] == new
    assert real["summary"]["masquerade"] == {"added": 0, "removed": 0, "unchanged": 1}
    applies = [c[1] for c in machine.calls if c[0] == "apply"]
    assert applies == [new, old]
    assert machine.states[old] == CODECS[old].empty_state() or \
        not any(machine.states[old].present.values())
    assert model.ruleset_to_dict(plan.read_model(CODECS[new], machine.states[new])[0]) == \
        model.ruleset_to_dict(ruleset_of(V4_CONFIG))
    # the old backend's boot files go with its rules
    assert not any(path.endswith(tuple(host.PERSIST_FILES[old].values()))
                   for path in machine.files)
    assert any(line.startswith("- [%s] postrouting:" % old) for line in real["changes"])
    assert "[%s] postrouting:" % old in real["diff"]["before"]
    again = run(backend=new, config=V4_CONFIG)
    assert again["changed"] is False and "backend_switch" not in again


def test_a_deletion_is_not_held_up_by_a_foreign_forward_drop(machine):
    machine.states["nftables"] = reparse(nft, state_of(nft, V4_CONFIG))
    _docker_host(machine)
    result = run(backend="nftables", state="deleted",
                 config={"port_forwards": [{"in_interface": "ppp0", "port": 8080}]})
    assert result["changed"] is True and "failed" not in result
