# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""nat_status results as other tools read them (pure): a Prometheus textfile for
node-exporter's textfile collector, and one row (and one table line) per gateway.

The conntrack metrics follow node-exporter's own names (``node_nf_conntrack_entries``,
``node_nf_conntrack_entries_limit``) under the prefix ``ipmasq_``: the same meaning, and no
clash with node-exporter's conntrack collector on the same host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import status

PREFIX = "ipmasq_"
# metric name part per kind: ipmasq_port_forward_packets_total and so on
METRIC_KIND = {"masquerade": "masquerade", "snat": "snat", "port_forwards": "port_forward",
               "forward": "forward_rule", "helpers": "helper"}
WHAT = {"masquerade": "masquerade rules", "snat": "SNAT rules", "port_forwards": "port forwards",
        "forward": "forward rules", "helpers": "helper rules"}
# the labels of each kind's counters: its identity fields (forward: the whole rule but its
# comment), every one present in each sample ("" when unset), as Prometheus expects
LABELS = {
    "masquerade": ("source", "out_interface"), "snat": ("source", "out_interface"),
    "port_forwards": ("in_interface", "protocol", "port"),
    "forward": ("in_interface", "out_interface", "source", "destination", "protocol", "port",
                "ct_state", "action"),
    "helpers": ("helper", "protocol", "port"),
}


def _escape(value):
    """A label value as the text format wants it."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs):
    if not pairs:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (k, _escape(v)) for k, v in pairs)


def _family(lines, name, kind, text, samples):
    """One metric family: HELP, TYPE and its samples [(label pairs, value)]."""
    if not samples:
        return
    lines.append("# HELP %s%s %s" % (PREFIX, name, text))
    lines.append("# TYPE %s%s %s" % (PREFIX, name, kind))
    for pairs, value in samples:
        lines.append("%s%s%s %s" % (PREFIX, name, _labels(pairs), _value(value)))


def _value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(int(value))


def prometheus_text(result):
    """A nat_status result -> the text of ``ipmasq.prom``."""
    lines = []
    conntrack = result["conntrack"]
    _family(lines, "info", "gauge", "The backend that holds the ipmasq rules.",
            [((("backend", result["backend"]),), 1)])
    _family(lines, "rules", "gauge", "Entries of the owned ruleset, by kind.",
            [((("kind", k),), v) for k, v in sorted(result["rules"].items()) if k != "total"])
    if conntrack["count"] is not None:
        _family(lines, "nf_conntrack_entries", "gauge",
                "Number of currently allocated flow entries for connection tracking.",
                [((), conntrack["count"])])
    if conntrack["max"] is not None:
        _family(lines, "nf_conntrack_entries_limit", "gauge",
                "Maximum size of connection tracking table.", [((), conntrack["max"])])
    _family(lines, "nf_conntrack_source_entries", "gauge",
            "Tracked connections by original LAN source address and protocol (the top sources).",
            [((("source", row["address"]), ("protocol", proto)), n)
             for row in result["top_sources"] for proto, n in sorted(row["protocols"].items())])
    for kind in sorted(result["counters"]):
        rows = [row for row in result["counters"][kind] if row.get("packets") is not None]
        metric = METRIC_KIND.get(kind, kind)
        fields = LABELS.get(kind) or sorted(
            set(k for row in rows for k in row) - {"comment", "packets", "bytes"})
        for unit in ("packets", "bytes"):
            _family(lines, "%s_%s_total" % (metric, unit), "counter",
                    "%s counted by the %s since they were loaded (NAT rules count the "
                    "first packet of each connection)." % (unit.capitalize(), WHAT.get(kind, kind)),
                    [(tuple((f, row.get(f)) for f in fields), row[unit]) for row in rows])
    _family(lines, "port_forwards_unused", "gauge",
            "Port forwards without a connection since they were loaded.",
            [((), result["unused_port_forwards"])])
    if result["drift"]["differs"] is not None:
        _family(lines, "drift", "gauge", "1 when the live rules differ from the boot files.",
                [((), bool(result["drift"]["differs"]))])
    _family(lines, "rollbacks_pending", "gauge",
            "Changes made with rollback_timeout that wait for confirmation.",
            [((), sum(1 for row in result["rollbacks"] if row["status"] == "pending"))])
    _family(lines, "findings", "gauge", "What nat_status found worth a look, by severity.",
            [((("severity", sev),), sum(1 for f in result["findings"] if f["severity"] == sev))
             for sev in ("warning", "info")])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the fleet

def fleet_row(gateway, result):
    """One gateway's figures for the fleet table and the JSON file; ``result`` is what the
    nat_status task registered (failed or unreachable ones too)."""
    row = {"gateway": gateway}
    if not isinstance(result, dict) or not result:
        return dict(row, error="no status (the task did not run on this host)")
    if result.get("unreachable") or result.get("failed") or "conntrack" not in result:
        return dict(row, error="%s: %s" % (
            "unreachable" if result.get("unreachable") else "failed",
            " ".join(str(result.get("msg") or "no status").split())[:200]))
    conntrack, top = result["conntrack"], result["top_sources"]
    pending = [r["token"] for r in result["rollbacks"] if r["status"] == "pending"]
    row.update(
        backend=result["backend"], rules=result["rules"]["total"],
        conntrack_count=conntrack["count"], conntrack_max=conntrack["max"],
        conntrack_used_percent=conntrack["used_percent"],
        top_host=top[0]["address"] if top else None,
        top_host_connections=top[0]["connections"] if top else None,
        port_forwards=len(result["counters"].get("port_forwards", ())),
        unused_port_forwards=result["unused_port_forwards"],
        drift=result["drift"]["differs"], pending_rollbacks=pending,
        findings=result["findings"])
    return row


def fleet_rows(results):
    """{gateway: result} -> rows, the fullest connection tracking table first (gateways
    without figures last)."""
    rows = [fleet_row(gateway, result) for gateway, result in results.items()]
    rows.sort(key=lambda row: (row.get("conntrack_used_percent") is None,
                               -(row.get("conntrack_used_percent") or 0), row["gateway"]))
    return rows


HEADER = ("gateway", "backend", "rules", "conntrack used/max", "top host", "unused forwards",
          "drift", "pending rollback")


def _cells(row):
    if "error" in row:
        return (row["gateway"], row["error"])
    if row["conntrack_count"] is None:
        conntrack = "not loaded"
    else:
        conntrack = "%s/%s (%s%%)" % (row["conntrack_count"], row["conntrack_max"],
                                      status.format_number(row["conntrack_used_percent"] or 0))
    top = "%s (%d)" % (row["top_host"], row["top_host_connections"]) if row["top_host"] else "-"
    drift = {True: "yes", False: "no", None: "no boot file"}[row["drift"]]
    return (row["gateway"], row["backend"], str(row["rules"]), conntrack, top,
            "%d of %d" % (row["unused_port_forwards"], row["port_forwards"]), drift,
            ", ".join(row["pending_rollbacks"]) or "none")


def fleet_table(rows):
    """Rows -> lines of text: a header, then one line per gateway, columns aligned."""
    cells = [HEADER] + [_cells(row) for row in rows]
    widths = [max(len(c[i]) for c in cells if len(c) > i and len(c) == len(HEADER))
              for i in range(len(HEADER))]
    lines = []
    for cell in cells:
        if len(cell) != len(HEADER):  # an error: the name, then the message
            lines.append("%s  %s" % (cell[0].ljust(widths[0]), cell[1]))
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip())
    return lines
