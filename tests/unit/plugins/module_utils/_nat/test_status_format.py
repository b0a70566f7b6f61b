"""status_format.py: the node-exporter textfile (read back with Prometheus' own parser) and
the fleet table."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import status_format

RESULT = {
    "backend": "nftables",
    "rules": {"masquerade": 1, "snat": 0, "port_forwards": 2, "forward": 1, "helpers": 0,
              "total": 4},
    "foreign_rules": 0,
    "conntrack": {"count": 1234, "max": 262144, "used_percent": 0.47, "threshold_percent": 80,
                  "lan_networks": ["192.168.10.0/24"], "table_read": True},
    "top_sources": [
        {"address": "192.168.10.23", "connections": 12, "protocols": {"tcp": 10, "udp": 2}},
        {"address": "192.168.10.40", "connections": 3, "protocols": {"icmp": 3}}],
    "counters": {
        "masquerade": [{"source": "192.168.10.0/24", "out_interface": "ppp0", "comment": "office",
                        "packets": 5120, "bytes": 307200}],
        "snat": [],
        "port_forwards": [
            {"in_interface": "ppp0", "protocol": "tcp", "port": 8080, "to_address": "192.168.10.5",
             "to_port": 80, "packets": 37, "bytes": 2220},
            {"in_interface": "ppp0", "protocol": "udp", "port": "5000-5010",
             "to_address": "192.168.10.6", "packets": 0, "bytes": 0}],
        "forward": [{"in_interface": "ppp0", "ct_state": ["established", "related"],
                     "action": "accept", "packets": 99999999999, "bytes": 123456789012345}],
        "helpers": [],
    },
    "unused_port_forwards": 1,
    "rollbacks": [{"token": "4242-1a2b3c4d5e6f", "status": "pending", "seconds_left": 80,
                   "detail": None}],
    "drift": {"differs": True, "reason": "x", "changes": ["+ forward: accept"],
              "boot_files": ["/etc/ipmasq/ipmasq.nft"]},
    "findings": [{"severity": "warning", "topic": "drift", "message": "x"},
                 {"severity": "warning", "topic": "rollback", "message": "y"},
                 {"severity": "info", "topic": "counters", "message": "z"}],
}


def samples(text):
    """{(sample name, frozenset of labels): value} as Prometheus reads the text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, "sample twice: %r" % (key,)
            out[key] = sample.value
    return out


def test_the_textfile_reads_back_with_the_prometheus_parser():
    got = samples(status_format.prometheus_text(RESULT))
    assert got[("ipmasq_nf_conntrack_entries", frozenset())] == 1234
    assert got[("ipmasq_nf_conntrack_entries_limit", frozenset())] == 262144
    assert got[("ipmasq_info", frozenset({("backend", "nftables")}))] == 1
    assert got[("ipmasq_rules", frozenset({("kind", "port_forwards")}))] == 2
    assert got[("ipmasq_nf_conntrack_source_entries",
                frozenset({("source", "192.168.10.23"), ("protocol", "tcp")}))] == 10
    web = frozenset({("in_interface", "ppp0"), ("protocol", "tcp"), ("port", "8080")})
    assert got[("ipmasq_port_forward_packets_total", web)] == 37
    assert got[("ipmasq_port_forward_bytes_total", web)] == 2220
    forward = frozenset({("in_interface", "ppp0"), ("out_interface", ""), ("source", ""),
                         ("destination", ""), ("protocol", ""), ("port", ""),
                         ("ct_state", "established,related"), ("action", "accept")})
    assert got[("ipmasq_forward_rule_packets_total", forward)] == 99999999999
    assert got[("ipmasq_forward_rule_bytes_total", forward)] == 123456789012345
    assert got[("ipmasq_masquerade_packets_total", frozenset(
        {("source", "192.168.10.0/24"), ("out_interface", "ppp0")}))] == 5120
    assert got[("ipmasq_port_forwards_unused", frozenset())] == 1
    assert got[("ipmasq_drift", frozenset())] == 1
    assert got[("ipmasq_rollbacks_pending", frozenset())] == 1
    assert got[("ipmasq_findings", frozenset({("severity", "warning")}))] == 2


def test_the_metric_types_are_those_of_node_exporter():
    types = dict((f.name, f.type) for f in text_string_to_metric_families(
        status_format.prometheus_text(RESULT)))
    assert types["ipmasq_nf_conntrack_entries"] == "gauge"
    assert types["ipmasq_nf_conntrack_entries_limit"] == "gauge"
    assert types["ipmasq_port_forward_packets"] == "counter"  # the parser drops _total


def test_unknown_figures_are_left_out_not_made_up():
    result = dict(RESULT, conntrack=dict(RESULT["conntrack"], count=None, max=None,
                                         used_percent=None),
                  drift=dict(RESULT["drift"], differs=None),
                  counters=dict(RESULT["counters"], masquerade=[dict(
                      RESULT["counters"]["masquerade"][0], packets=None, bytes=None)]))
    names = set(name for name, _labels in samples(status_format.prometheus_text(result)))
    assert "ipmasq_nf_conntrack_entries" not in names
    assert "ipmasq_drift" not in names
    assert "ipmasq_masquerade_packets_total" not in names


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_any_text_in_a_label_reads_back_as_itself(text):
    """Label values come from the host (interface names, comments): quotes, backslashes and
    line breaks are escaped, never break the file."""
    result = dict(RESULT, counters=dict(RESULT["counters"], port_forwards=[dict(
        RESULT["counters"]["port_forwards"][0], in_interface=text)]))
    got = samples(status_format.prometheus_text(result))
    labels = frozenset({("in_interface", text), ("protocol", "tcp"), ("port", "8080")})
    assert got[("ipmasq_port_forward_packets_total", labels)] == 37


# ---------------------------------------------------------------- the fleet

def test_fleet_rows_fullest_table_first_and_failures_last():
    busy = dict(RESULT, conntrack=dict(RESULT["conntrack"], count=230000, used_percent=87.74))
    rows = status_format.fleet_rows({
        "gw-a": RESULT, "gw-b": busy,
        "gw-c": {"unreachable": True, "msg": "Failed to connect to the host via ssh:\nx"},
        "gw-d": {"failed": True, "msg": "nft -j list table inet ipmasq failed"},
        "gw-e": {},
    })
    assert [r["gateway"] for r in rows] == ["gw-b", "gw-a", "gw-c", "gw-d", "gw-e"]
    assert rows[1] == {
        "gateway": "gw-a", "backend": "nftables", "rules": 4, "conntrack_count": 1234,
        "conntrack_max": 262144, "conntrack_used_percent": 0.47, "top_host": "192.168.10.23",
        "top_host_connections": 12, "port_forwards": 2, "unused_port_forwards": 1,
        "drift": True, "pending_rollbacks": ["4242-1a2b3c4d5e6f"],
        "findings": RESULT["findings"]}
    assert rows[2]["error"] == "unreachable: Failed to connect to the host via ssh: x"
    assert rows[4]["error"].startswith("no status")


def test_fleet_table_one_aligned_line_per_gateway():
    quiet = dict(RESULT, top_sources=[], rollbacks=[], unused_port_forwards=0,
                 drift=dict(RESULT["drift"], differs=False),
                 conntrack=dict(RESULT["conntrack"], count=0, used_percent=0.0))
    lines = status_format.fleet_table(status_format.fleet_rows(
        {"gw1": RESULT, "gateway-two": quiet, "gw3": {"failed": True, "msg": "boom"}}))
    assert lines == [
        "gateway      backend   rules  conntrack used/max   top host            "
        "unused forwards  drift  pending rollback",
        "gw1          nftables  4      1234/262144 (0.47%)  192.168.10.23 (12)  "
        "1 of 2           yes    4242-1a2b3c4d5e6f",
        "gateway-two  nftables  4      0/262144 (0%)        -                   "
        "0 of 2           no     none",
        "gw3          failed: boom",
    ]


@pytest.mark.parametrize("differs, text", [(True, "yes"), (False, "no"), (None, "no boot file")])
def test_fleet_table_drift_words(differs, text):
    result = dict(RESULT, drift=dict(RESULT["drift"], differs=differs))
    line = status_format.fleet_table(status_format.fleet_rows({"gw": result}))[1]
    assert "  %s  " % text in line


# ---------------------------------------------------------------- the filter around it

def test_the_status_report_filter():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.ipmasq.gateway.plugins.filter import status_report

    filters = status_report.FilterModule().filters()
    report = filters["status_report"]({"gw1": RESULT, "gw2": {"unreachable": True, "msg": "x"}})
    assert [r["gateway"] for r in report["gateways"]] == ["gw1", "gw2"]
    assert report["table"] == status_format.fleet_table(report["gateways"])
    with pytest.raises(AnsibleFilterError, match="expects a dict"):
        filters["status_report"](["gw1"])
