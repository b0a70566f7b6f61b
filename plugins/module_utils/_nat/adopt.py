# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""Adopting a hand-made gateway (``adopt: true``): which rules in the built-in chains our
config now covers, and the commands that remove them (pure).

The hand-typed ``iptables -t nat -A POSTROUTING -s LAN -o ppp0 -j MASQUERADE`` sits in the
built-in chain next to our jump. Once our rules hold the same entry, that rule is a
duplicate; the run removes it after our rules are in, so that no packet meets a gap. A rule
counts as covered when it reads (importer.entries) as entries that the ruleset after the
run holds, comments aside. Other managers' rules (Docker...) are never touched; every
other rule stays and is reported, with the reason.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import importer
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m

# family, table, chain, position (1-based, in its chain as read), text: the line as
# iptables-save printed it ("-A POSTROUTING ...")
Removal = namedtuple("Removal", "family table chain position text")
Adoption = namedtuple("Adoption", "removals kept")


def _same(kind, ours, theirs):
    if kind == "port_forwards":
        return ours._replace(comment=None, hairpin=False) == theirs._replace(comment=None)
    if kind == "helpers":
        return ours == theirs
    return ours._replace(comment=None) == theirs._replace(comment=None)


def _covered(made, after):
    """None when ``after`` holds every entry of ``made``, else the first entry it lacks."""
    for kind, entry in made:
        if kind == "dnat_accept":
            if not after.get("port_forwards"):
                return "the accept of DNATed connections (no port forward in the config)"
            continue
        built = m.build_config({kind: [entry]})[kind]
        for one in built:
            if not any(_same(kind, ours, one) for ours in after.get(kind, ())):
                return "%s %s" % (kind, m.entry_to_dict(kind, one))
    return None


def plan(saves, after):
    """``saves``: {family: ``iptables-save`` text}; ``after``: the ruleset after the run ->
    Adoption: the rules to remove, and the rules that stay [{family, rule, reason}]."""
    removals, kept = [], []
    for family in sorted(saves):
        report = importer.Report("iptables")
        lines = importer.iptables_lines(saves[family] or "", report)
        bridges = importer.docker_bridges(lines)
        positions = {}
        for record in lines:
            if record.op == "decl":
                continue
            key = (record.table, record.chain)
            positions[key] = positions.get(key, 0) + 1
            scope = importer.IPT_SCOPE.get(key)
            if scope is None or record.rule.verdict in ("jump", "goto") and \
                    iptables.CHAINS.get(scope, (None, None))[1] == record.rule.target:
                continue  # another chain, or our own jump
            if importer.manager_of_rule(record, bridges)[0]:
                continue
            try:
                made = importer.entries(scope, record.rule)
                missing = _covered(made, after)
            except importer.Cannot as exc:
                kept.append({"family": family, "rule": record.text,
                             "reason": "the model cannot express it: %s" % exc})
                continue
            except m.ConfigError as exc:
                kept.append({"family": family, "rule": record.text,
                             "reason": "the model refuses it: %s" % exc})
                continue
            if missing:
                kept.append({"family": family, "rule": record.text,
                             "reason": "the config does not hold %s" % missing})
                continue
            removals.append(Removal(family, record.table, record.chain, positions[key],
                                    record.text))
    return Adoption(removals, kept)


def _script(removals, line_of):
    out = []
    for family in (4, 6):
        mine = [r for r in removals if r.family == family]
        if not mine:
            continue
        out.append("# %s --noflush" % iptables.TOOLS[family])
        for table in iptables.TABLES:
            lines = [line_of(r) for r in mine if r.table == table]
            if lines:
                out += ["*%s" % table] + lines + ["COMMIT"]
    return out


def commands(adoption):
    """``iptables-restore --noflush`` input (parts per family, as iptables.render_changes
    writes them) that deletes the covered rules, each by its exact specification."""
    return _script(adoption.removals, lambda r: "-D" + r.text[2:])


def undo(adoption, saves_now):
    """The input that puts back, at their places, the removed rules that ``saves_now`` (the
    host read again after a failed apply) no longer holds."""
    missing = []
    for family in sorted(set(r.family for r in adoption.removals)):
        present = {}
        for raw in (saves_now.get(family) or "").split("\n"):
            line = raw.strip()
            present[line] = present.get(line, 0) + 1
        wanted = {}
        for removal in adoption.removals:
            if removal.family == family:
                wanted[removal.text] = wanted.get(removal.text, 0) + 1
        gone = dict((text, count - present.get(text, 0)) for text, count in wanted.items())
        for removal in sorted((r for r in adoption.removals if r.family == family),
                              key=lambda r: (r.table, r.chain, r.position)):
            if gone.get(removal.text, 0) > 0:
                gone[removal.text] -= 1
                missing.append(removal)
    return _script(missing, lambda r: "-I %s %d%s" % (
        r.chain, r.position, r.text[2 + len(r.chain) + 1:]))


def lines(adoption):
    """The removed rules for diff mode, one a line."""
    return "".join("[hand-made %s] %s: %s\n" % (
        iptables.TOOLS[r.family].split("-", 1)[0], r.table, r.text) for r in adoption.removals)


def report(adoption):
    return {"removed": [{"family": r.family, "table": r.table, "rule": r.text}
                        for r in adoption.removals],
            "kept": adoption.kept}
