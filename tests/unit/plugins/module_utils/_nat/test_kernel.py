"""nat_kernel: the boot unit fails closed, forwarding is never in sysctl.d, and only what
differs changes (live values and files, in check mode nothing)."""
import pytest

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import kernel, kernel_plan, refresh
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import role_vars
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat.host import Host

BINS = dict((name, "/usr/sbin/" + name) for name in
            ("sysctl", "grep", "systemd-sysctl", "nft", "iptables", "ip6tables",
             "iptables-restore", "ip6tables-restore"))
NFT_FILES = {"nft": "/etc/ipmasq/ipmasq.nft"}
IPT_FILES = {"ipv4": "/etc/ipmasq/ipmasq.v4", "ipv6": "/etc/ipmasq/ipmasq.v6"}


def _lines(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("backend, files", [("nftables", NFT_FILES), ("iptables", IPT_FILES)])
def test_the_unit_switches_forwarding_on_only_after_complete_files_loaded(backend, files):
    text = kernel.unit_text(backend, files, BINS, True, kernel.SYSCTL_FILE[True])
    pre, start, post = (_lines(text, p) for p in ("ExecStartPre=", "ExecStart=", "ExecStartPost="))
    # forwarding off first, then every file must end with the marker
    assert pre[:2] == ["ExecStartPre=/usr/sbin/sysctl -q -w net.ipv4.ip_forward=0",
                       "ExecStartPre=/usr/sbin/sysctl -q -w net.ipv6.conf.all.forwarding=0"]
    for path in files.values():
        assert "ExecStartPre=/usr/sbin/grep -qxF '%s' %s" % (kernel.END_MARKER, path) in pre
    assert all(path in " ".join(start) for path in files.values())
    # on again only after ExecStart (systemd skips ExecStartPost when it failed), and not
    # with a "-" that would ignore a failure before it
    assert post[-2:] == ["ExecStartPost=/usr/sbin/sysctl -q -w net.ipv4.ip_forward=1",
                         "ExecStartPost=/usr/sbin/sysctl -q -w net.ipv6.conf.all.forwarding=1"]
    assert not [line for line in pre + start if line.startswith(("ExecStartPre=-/usr/sbin/sysctl",
                                                                 "ExecStartPre=-/usr/sbin/grep",
                                                                 "ExecStart=-"))]
    assert "After=local-fs.target systemd-modules-load.service systemd-sysctl.service" in text


def test_the_timeout_objects_are_made_before_the_rules_that_use_them():
    files = dict(IPT_FILES, nfct="/etc/ipmasq/ipmasq.nfct")
    assert kernel.unit_tools("iptables", files)[-2:] == ["xargs", "nfct"]
    bins = dict(BINS, xargs="/usr/bin/xargs", nfct="/usr/sbin/nfct")
    start = _lines(kernel.unit_text("iptables", files, bins, False, kernel.SYSCTL_FILE[True]),
                   "ExecStart=")
    # one nfct command a line, up to the end marker; an object that exists (a restart) is
    # no failure, one that is missing fails the iptables-restore after it (no "-" there)
    assert start == [
        "ExecStart=-/usr/bin/xargs -r -a /etc/ipmasq/ipmasq.nfct -E '#' -L 1 /usr/sbin/nfct",
        "ExecStart=/usr/sbin/iptables-restore -w --noflush /etc/ipmasq/ipmasq.v4",
        "ExecStart=/usr/sbin/ip6tables-restore -w --noflush /etc/ipmasq/ipmasq.v6"]


def test_ipv6_forwarding_is_left_alone_when_not_asked():
    text = kernel.unit_text("nftables", NFT_FILES, BINS, False, kernel.SYSCTL_FILE[True])
    assert "ipv6" not in text


def test_forwarding_is_never_written_to_sysctl_d():
    wanted = kernel.wanted_sysctls({"conntrack_max": 1024, "conntrack_timeouts": {"udp": 30},
                                    "ipv6_forwarding": True}, role_vars.CONNTRACK_TIMEOUTS)
    assert wanted[-2:] == [("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")]
    text = kernel.sysctl_file(wanted)
    assert "forward" not in text.replace("Forwarding is switched on", "")
    assert "-net.netfilter.nf_conntrack_max = 1024" in text
    assert "net.netfilter.nf_conntrack_udp_timeout = 30" in text


# ---------------------------------------------------------------- the module, on a fake host

class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.params = {"state": "present", "ipv6_forwarding": False, "conntrack_max": None, "conntrack_timeouts": {},
                       "persist": True, "boot_unit": {"backend": "nftables", "files": NFT_FILES}}
        self.params.update(params)
        self.check_mode = check_mode
        self._diff = True
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


class Machine:
    def __init__(self):
        self.files = {}
        self.sysctl = {"net.ipv4.ip_forward": "0", "net.netfilter.nf_conntrack_max": "65536",
                       "net.netfilter.nf_conntrack_udp_timeout": "30"}
        self.read_only = set()
        self.systemctl_calls = []
        self.enabled = set()
        self.dirs = {"/etc/ppp/ip-up.d"}

    def listing(self, path):
        return sorted(p[len(path) + 1:] for p in self.files if p.startswith(path + "/"))


@pytest.fixture(name="machine")
def fixture_machine(monkeypatch):
    machine = Machine()

    def systemctl(_host, *args):
        machine.systemctl_calls.append(args)
        if args[0] == "enable":
            machine.enabled |= set(args[1:])
        if args[0] == "disable":
            machine.enabled -= set(args[1:])
        if args[0] == "is-enabled":
            return (0, "enabled") if args[1] in machine.enabled else (1, "disabled")
        if args[0] == "is-active":
            return (3, "inactive")
        return 0, ""

    def write_file(path, content, mode, dir_mode=0o755):
        machine.files[path] = content
        machine.dirs.add(path.rsplit("/", 1)[0])

    def remove_empty_dir(path):
        if machine.listing(path):
            return False
        machine.dirs.discard(path)
        return True

    def write_sysctl(key, value):
        machine.sysctl[key] = value

    monkeypatch.setattr(Host, "read_file", staticmethod(machine.files.get))
    monkeypatch.setattr(Host, "write_file", staticmethod(write_file))
    monkeypatch.setattr(Host, "remove_file", staticmethod(machine.files.pop))
    monkeypatch.setattr(Host, "is_dir", staticmethod(lambda path: path in machine.dirs))
    monkeypatch.setattr(Host, "list_dir", staticmethod(machine.listing))
    monkeypatch.setattr(Host, "remove_empty_dir", staticmethod(remove_empty_dir))
    monkeypatch.setattr(Host, "read_sysctl", staticmethod(
        lambda key: (machine.sysctl.get(key), key not in machine.read_only)))
    monkeypatch.setattr(Host, "write_sysctl", staticmethod(write_sysctl))
    monkeypatch.setattr(Host, "tool_paths", lambda self, names: dict((n, BINS[n]) for n in names))
    monkeypatch.setattr(Host, "systemctl", systemctl)
    return machine


def test_first_run_sets_everything_and_the_second_nothing(machine):
    params = {"conntrack_max": 262144, "conntrack_timeouts": {"udp": 45}}
    first = kernel_plan.run(FakeModule(**params))
    assert first["changed"] is True
    assert first["sysctl"] == {
        "net.netfilter.nf_conntrack_max": {"before": "65536", "after": "262144"},
        "net.netfilter.nf_conntrack_udp_timeout": {"before": "30", "after": "45"},
        "net.ipv4.ip_forward": {"before": "0", "after": "1"}}
    assert sorted(machine.files) == sorted([
        kernel.UNIT_PATH, kernel.SYSCTL_FILE[True], refresh.SCRIPT_PATH, refresh.UNIT_PATH,
        "/etc/ppp/ip-up.d/ipmasq"])  # the dhclient hook only where dhclient's hooks live
    assert ("daemon-reload",) in machine.systemctl_calls and machine.enabled
    assert ("enable", kernel.UNIT_NAME, refresh.UNIT_NAME) in machine.systemctl_calls
    assert "~ net.ipv4.ip_forward: 0 -> 1" in first["changes"]
    again = kernel_plan.run(FakeModule(**params))
    assert again["changed"] is False and again["changes"] == [] and again["sysctl"] == {}


def test_check_mode_reports_and_changes_nothing(machine):
    before = dict(machine.sysctl)
    result = kernel_plan.run(FakeModule(check_mode=True, conntrack_max=262144))
    assert result["changed"] is True and result["files"]
    assert "net.ipv4.ip_forward" in result["sysctl"]
    assert machine.sysctl == before and machine.files == {} and not machine.enabled
    assert not [c for c in machine.systemctl_calls if c[0] != "is-enabled"]


def test_a_read_only_conntrack_max_is_a_warning(machine):
    machine.read_only.add("net.netfilter.nf_conntrack_max")
    module = FakeModule(conntrack_max=262144)
    result = kernel_plan.run(module)
    assert "failed" not in result
    assert "net.netfilter.nf_conntrack_max" not in result["sysctl"]
    assert module.warnings and "read-only here" in module.warnings[0]
    assert "-net.netfilter.nf_conntrack_max = 262144" in machine.files[kernel.SYSCTL_FILE[True]]


def test_persist_false_writes_the_runtime_file_and_no_unit(machine):
    machine.files[kernel.SYSCTL_FILE[True]] = "old\n"
    result = kernel_plan.run(FakeModule(persist=False))
    assert sorted(machine.files) == [kernel.SYSCTL_FILE[False]]
    assert "~ remove " + kernel.SYSCTL_FILE[True] in result["changes"]
    assert machine.systemctl_calls == []


@pytest.mark.parametrize("params, message", [
    ({"conntrack_timeouts": {"udpp": 3}}, "conntrack_timeouts.udpp: not a timeout"),
    ({"conntrack_timeouts": {"udp": -3}}, "conntrack_timeouts.udp: must be a positive number"),
    ({"conntrack_max": 0}, "conntrack_max: must be a positive number (got 0)"),
    ({"boot_unit": {"backend": "iptables", "files": NFT_FILES}},
     "boot_unit.files: the iptables backend needs ipv4 and ipv6"),
])
def test_bad_options_fail_before_anything_is_read(machine, params, message):
    result = kernel_plan.run(FakeModule(**params))
    assert result["failed"] is True and result["msg"].startswith(message), result
    assert machine.files == {} and machine.systemctl_calls == []


# ---------------------------------------------------------------- the values before, and absent

def test_the_sysctl_file_records_the_values_before_and_keeps_them():
    text = kernel.sysctl_file([("net.ipv4.ip_forward", "1"), ("net.netfilter.nf_conntrack_udp_timeout", "45")],
                              {"net.ipv4.ip_forward": "0", "net.netfilter.nf_conntrack_udp_timeout": "30"})
    assert kernel.recorded_before(text) == {"net.ipv4.ip_forward": "0",
                                            "net.netfilter.nf_conntrack_udp_timeout": "30"}
    # comments only: systemd-sysctl applies none of it, forwarding least of all
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        "net.netfilter.nf_conntrack_udp_timeout = 45"]
    assert kernel.recorded_before("net.ipv4.ip_forward = 1\n#   x = 1\n") == {}


def test_the_first_run_records_what_it_found_and_later_runs_keep_it(machine):
    machine.sysctl["net.ipv4.ip_forward"] = "1"  # a host that forwarded before us
    kernel_plan.run(FakeModule(conntrack_timeouts={"udp": 45}))
    kernel_plan.run(FakeModule(conntrack_timeouts={"udp": 60}))
    assert kernel.recorded_before(machine.files[kernel.SYSCTL_FILE[True]]) == {
        "net.ipv4.ip_forward": "1", "net.netfilter.nf_conntrack_udp_timeout": "30"}
    # the record moves with the file when persist is switched
    kernel_plan.run(FakeModule(persist=False, conntrack_timeouts={"udp": 60}))
    assert kernel.recorded_before(machine.files[kernel.SYSCTL_FILE[False]])[
        "net.netfilter.nf_conntrack_udp_timeout"] == "30"


def _converged(machine):
    machine.dirs.add("/etc/ipmasq")
    machine.files["/etc/ipmasq/ipmasq.nft"] = "table inet ipmasq {}\n# ipmasq: end of ruleset\n"
    kernel_plan.run(FakeModule(conntrack_max=262144, conntrack_timeouts={"udp": 45}))
    assert machine.sysctl["net.ipv4.ip_forward"] == "1" and machine.enabled


def test_absent_puts_every_value_back_and_removes_units_and_files(machine):
    _converged(machine)
    module = FakeModule(state="absent")
    result = kernel_plan.run(module)
    assert result["changed"] is True
    assert machine.sysctl == {"net.ipv4.ip_forward": "0", "net.netfilter.nf_conntrack_max": "65536",
                              "net.netfilter.nf_conntrack_udp_timeout": "30"}
    assert result["changes"][0] == "~ net.ipv4.ip_forward: 1 -> 0"  # forwarding off first
    assert machine.files == {} and "/etc/ipmasq" not in machine.dirs
    assert result["unit"]["disabled_now"] == [kernel.UNIT_NAME, refresh.UNIT_NAME]
    assert ("disable", "--now", kernel.UNIT_NAME) in machine.systemctl_calls
    assert machine.systemctl_calls[-1] == ("daemon-reload",)
    assert "~ remove /etc/ipmasq/ipmasq.nft" in result["changes"]
    assert "~ remove /etc/ipmasq/" in result["changes"]
    assert module.warnings == []
    again = kernel_plan.run(FakeModule(state="absent"))
    assert again["changed"] is False and again["changes"] == []


def test_absent_in_check_mode_shows_the_same_plan_and_changes_nothing(machine):
    _converged(machine)
    files, sysctl = dict(machine.files), dict(machine.sysctl)
    planned = kernel_plan.run(FakeModule(state="absent", check_mode=True))
    assert machine.files == files and machine.sysctl == sysctl and machine.enabled
    assert planned["changes"] == kernel_plan.run(FakeModule(state="absent"))["changes"]


def test_absent_without_a_record_switches_forwarding_off_and_says_so(machine):
    _converged(machine)
    del machine.files[kernel.SYSCTL_FILE[True]]
    machine.sysctl["net.ipv4.ip_forward"] = "1"
    module = FakeModule(state="absent")
    kernel_plan.run(module)
    assert machine.sysctl["net.ipv4.ip_forward"] == "0"
    assert "switching IPv4 forwarding off" in module.warnings[0]


def test_absent_on_a_host_without_us_changes_nothing(machine):
    machine.sysctl["net.ipv4.ip_forward"] = "1"
    result = kernel_plan.run(FakeModule(state="absent"))
    assert result["changed"] is False and machine.sysctl["net.ipv4.ip_forward"] == "1"
    assert machine.systemctl_calls == []


def test_absent_keeps_a_folder_that_holds_files_of_others(machine):
    _converged(machine)
    machine.files["/etc/ipmasq/notes.txt"] = "mine\n"
    module = FakeModule(state="absent")
    kernel_plan.run(module)
    assert machine.files == {"/etc/ipmasq/notes.txt": "mine\n"}
    assert "/etc/ipmasq stays" in module.warnings[0]


def test_documentation_matches_the_argument_spec():
    import yaml
    from ansible_collections.ipmasq.gateway.plugins.modules import nat_kernel
    options = yaml.safe_load(nat_kernel.DOCUMENTATION)["options"]
    assert sorted(options) == sorted(nat_kernel.ARGUMENT_SPEC)
    for name, spec in nat_kernel.ARGUMENT_SPEC.items():
        for key in ("type", "choices", "default"):
            assert options[name].get(key, "str" if key == "type" else None) == \
                spec.get(key, "str" if key == "type" else None), (name, key)
