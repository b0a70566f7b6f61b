# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""What nat_rules does for each state: validate, read, plan, apply, report.

All decisions are pure functions of other modules; the host is reached only through
``host.Host``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import coexist
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import diff
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import nft
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import rules
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat.host import (
    ConfirmedButNotPersisted, Host, HostError, describe_outcome)

CODECS = {"nftables": nft, "iptables": iptables}


def want_state(codec, ruleset, addresses=None):
    """A ruleset -> the backend State that holds it (forwards in lookup tables if it has
    any; hairpin sets filled with ``addresses``, {interface: addresses}, empty without)."""
    return codec.layout(*rules.to_rules(ruleset, lookups=codec.LOOKUPS,
                                        stateless_npt=getattr(codec, "STATELESS_NPT", False)),
                        addresses=addresses)


def read_model(codec, state):
    """A backend State -> (ruleset, foreign rules)."""
    return rules.from_rules(*codec.to_rules(state))


def ruleset_lines(codec, state):
    """One line per rule, for diff mode: ``chain: rule`` (a map element as its DNAT rule)."""
    chains, lookups = codec.to_rules(state)
    chains["prerouting"] = chains["prerouting"] + rules.lookup_rules(lookups)
    return "".join("%s: %s\n" % (c, codec.rule_text(x)) for c in rules.CHAINS for x in chains[c]) \
        + "".join("set %s: %s\n" % (name, " ".join(sorted(members)) or "(empty)")
                  for name, members in sorted(codec.address_sets(state).items()))


def change_lines(lines_before, lines_after, written):
    """The plan in short: "- rule" removed, "+ rule" added, "~ write file"."""
    old, new = lines_before.splitlines(), lines_after.splitlines()
    kept_old, kept_new = set(old), set(new)
    return (["- " + line for line in old if line not in kept_new]
            + ["+ " + line for line in new if line not in kept_old]
            + ["~ write " + path for path in written])


_OURS_NFT = re.compile(r"\btable\s+inet\s+ipmasq\b")


def _own_codec(text):
    """The codec of our own table or chains when the text holds them, else None."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return nft if '"ipmasq"' in text else None
    if _OURS_NFT.search(text):
        return nft
    return iptables if "IPMASQ-" in text else None


def parse_running_config(text, report=False):
    """Text from any supported source -> ruleset, or (ruleset, report) with ``report``.

    Text that holds our own table or chains is read as ours, strictly: a rule there that
    the model cannot express is an error. Any other text is imported (importer.py): the
    rules the model cannot express and those of other managers are reported, not fatal.
    Raises rules.ParseError.
    """
    codec = _own_codec(text)
    if codec is None:
        # Imported here: every other run would compile it for nothing.
        from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import importer
        ruleset, found = importer.import_text(text)
        return (ruleset, found) if report else ruleset
    try:
        state = codec.parse(text)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, rules.ParseError):
            raise
        raise rules.ParseError("not a ruleset this module can read (%s: %s)"
                               % (type(exc).__name__, exc))
    ruleset, foreign = read_model(codec, state)
    if foreign:
        raise rules.ParseError("cannot express these rules in the model: %s" % "; ".join(
            x.comment if x.verdict == "unknown" else codec.rule_text(x) for x in foreign))
    if not report:
        return ruleset
    return ruleset, {"format": "%s (our own %s)" % (
        "nftables" if codec is nft else "iptables",
        "table inet ipmasq" if codec is nft else "IPMASQ chains"),
        "read": sum(len(v) for v in ruleset.values()), "unreadable": [], "foreign": {},
        "out_of_scope": {}, "notes": []}


def _parse_warnings(report):
    from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import importer
    return importer.warnings(report)


def _no_addresses(interfaces):
    return {}


def plan_change(codec, state_name, have_state, config, addresses_of=_no_addresses,
                before=None):
    """(before ruleset, after ruleset, want State, commands); pure but for
    ``addresses_of(interfaces)``, which gives {interface: addresses} for the hairpin sets.
    ``before``: our ruleset when it is not the one ``have_state`` holds (a backend switch
    carries the rules of the other backend over)."""
    if before is None:
        before, _foreign = read_model(codec, have_state)
    after = diff.after_state(state_name, before, config)
    m.check_ruleset(after)  # raises ConfigError, e.g. merged timeouts that disagree
    hairpin = rules.hairpin_interfaces(after)
    published = rules.static_forward_interfaces(after)
    addresses = addresses_of(sorted(set(hairpin) | set(published)))
    rules.check_static_addresses(after, addresses)
    want = want_state(codec, after, dict((name, addresses.get(name, ())) for name in hairpin))
    return before, after, want, codec.render_changes(have_state, want)


def run(module):
    p = module.params
    state = p["state"]
    if p["confirm_token"]:
        return _confirm(Host(module), p["confirm_token"], p["confirm"])
    if p["rollback_timeout"] < 0:
        return {"failed": True, "changed": False,
                "msg": "rollback_timeout: must be 0 (off) or a number of seconds (got %d)"
                       % p["rollback_timeout"]}
    try:
        config = m.build_config(p["config"], partial=state == "deleted")
    except m.ConfigError as exc:
        return {"failed": True, "msg": "invalid config: %s" % exc, "changed": False}

    if state == "parsed":
        try:
            ruleset, found = parse_running_config(p["running_config"], report=True)
        except (rules.ParseError, ValueError) as exc:
            return {"failed": True, "changed": False,
                    "msg": "running_config: cannot parse: %s" % exc}
        for text in _parse_warnings(found):
            module.warn(text)
        return {"changed": False, "parsed": m.ruleset_to_dict(ruleset), "parse_report": found}
    try:
        if state == "rendered":
            backend = "iptables" if p["backend"] == "iptables" else "nftables"
            ruleset = m.empty_ruleset()
            ruleset.update(config)
            text = CODECS[backend].render_full(want_state(CODECS[backend], ruleset))
            return {"changed": False, "backend": backend, "rendered": text.splitlines()}

        host = Host(module)
        if state == "deleted" and p["backend"] != "auto" and not host.has_backend(p["backend"]):
            # Without its tools a backend holds no rules of ours: nothing to delete.
            empty = m.empty_ruleset()
            return {"changed": False, "backend": p["backend"], "commands": [], "persisted": [],
                    "summary": diff.summary(empty, empty), "persist_files": {},
                    "conntrack_deleted": []}
        with host.lock():
            site = coexist.Site(host)
            if state == "gathered":
                backend = coexist.resolve(site, p["backend"])
                return {"changed": False, "backend": backend, "gathered": m.ruleset_to_dict(
                    read_model(CODECS[backend], site.state(backend))[0])}
            decision = coexist.decide(site, p["backend"], state, config,
                                      p["foreign_forward_drop"], module.warn)
            return _change(module, host, decision, state, config)
    except rules.RenderError as exc:
        return {"failed": True, "changed": False, "msg": "nothing was changed: %s" % exc}
    except coexist.DecisionError as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}
    except m.ConfigError as exc:
        return {"failed": True, "changed": False,
                "msg": "invalid config together with the rules on the host, nothing was "
                       "changed: %s" % exc}
    except HostError as exc:
        return {"failed": True, "changed": False, "msg": str(exc)}


def _confirm(host, token, confirm):
    """Keep a change made with rollback_timeout (stop its timer, persist its files), or with
    ``confirm`` false only report where it stands."""
    try:
        with host.lock():
            if not confirm:
                return {"changed": False, "rollback_status": host.rollback_status(token)}
            written = host.confirm(token)
    except ConfirmedButNotPersisted as exc:
        return {"failed": True, "changed": True, "confirmed": token, "persisted": [],
                "msg": str(exc)}
    except HostError as exc:
        result = {"failed": True, "changed": False, "msg": str(exc)}
        try:
            status = host.rollback_status(token)
        except HostError:
            status = "unknown"
        if status not in ("pending", "unknown"):
            result["rollback_status"] = status  # too late: what the timer did
        return result
    return {"changed": True, "confirmed": token, "persisted": written}


def _pending_rollbacks(host):
    """(the change waiting for confirmation or None, warnings about failed rollbacks)."""
    waiting, warnings = None, []
    for token, deadline, outcome in host.rollbacks():
        if outcome is None:
            waiting = (token, deadline)
        elif outcome != "restored":
            warnings.append(describe_outcome(token, outcome))
    return waiting, warnings


def missing_interface_warnings(uses, missing):
    """One warning per interface in ``missing``, naming where ``uses`` says it is named."""
    out = []
    for name in missing:
        where = uses[name]
        out.append(
            "interface %s does not exist on this host (named by %s%s): the rules that name it "
            "match nothing until it appears. A PPP, VPN or other link that comes up later is "
            "fine; otherwise check the name (the roles take it from ipmasq_wan_interface)."
            % (name, ", ".join(where[:3]), " and %d more" % (len(where) - 3) if len(where) > 3 else ""))
    return out


def _steps_text(steps):
    """The commands of every step as one list: alone as they are, several each under the
    line that names its tool (iptables parts carry theirs already)."""
    steps = [(backend, commands) for _kind, backend, commands in steps if commands]
    if len(steps) == 1:
        return list(steps[0][1])
    out = []
    for backend, commands in steps:
        out.extend((["# nft -f"] if backend == "nftables" else []) + list(commands))
    return out


def _change(module, host, decision, state, config):
    p = module.params
    backend, have_state = decision.backend, decision.have
    codec = CODECS[backend]
    if state != "deleted":
        uses = m.interface_uses(p["config"])
        for text in missing_interface_warnings(uses, host.missing_interfaces(sorted(uses))):
            module.warn(text)
    waiting, warnings = _pending_rollbacks(host)
    for text in warnings:
        module.warn(text)
    if waiting and not module.check_mode:
        # Applying now would build on a change that may still be rolled back, and the boot
        # file would get rules nobody confirmed.
        return {"failed": True, "changed": False, "rollback_token": waiting[0], "msg": (
            "a change made with rollback_timeout is waiting for confirmation (token %s; its "
            "rollback fires in %ds): confirm it with confirm_token, or let it roll back, "
            "before changing the rules again" % (waiting[0], max(0, waiting[1] - time.time())))}
    before, after, want, commands = plan_change(codec, state, have_state, config,
                                                host.addresses, before=decision.before)
    host.require_tools(backend, want)
    # A switch: the other backend's rules go, after ours are in (steps run in order).
    steps = [("ours", backend, commands)]
    if decision.old:
        old_codec = CODECS[decision.old]
        steps.append(("old", decision.old, old_codec.render_changes(
            decision.old_have, old_codec.empty_state())))
    adoption = adopt = None
    if p["adopt"]:
        from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import adopt
        # Last: the hand-made rules our rules now cover go once ours are in.
        adoption = adopt.plan(dict((f, host.iptables_save(f)) for f in (4, 6)), after)
        steps.append(("adopt", "iptables", adopt.commands(adoption)))
        for item in adoption.kept:
            module.warn("adopt: kept %s (%s)" % (item["rule"], item["reason"]))
        if adoption.removals and p["rollback_timeout"]:
            return {"failed": True, "changed": False, "msg": (
                "adopt: nothing was changed: removing the %d hand-made rules that the config "
                "covers cannot be undone by the rollback timer, which restores only our own "
                "rules; adopt without rollback_timeout" % len(adoption.removals))}
    boot = host.persist_files(backend, want) if p["persist"] else {}
    files = dict(boot.values())
    if p["persist"]:
        files.update(host.stale_persist_files(backend))
    to_write = host.persist_changes(files)
    flush = diff.conntrack_filters(before, after) \
        if p["conntrack_flush"] == "affected" and commands else []
    all_commands = _steps_text(steps)
    result = {
        "changed": bool(all_commands or to_write), "backend": backend,
        "commands": all_commands, "summary": diff.summary(before, after),
        "persisted": to_write,
        "persist_files": dict((key, path) for key, (path, _text) in boot.items()),
        "conntrack_deleted": [" ".join(f) for f in flush],
    }
    if decision.old:
        result["backend_switch"] = {
            "from": decision.old, "to": backend,
            "removed": ruleset_lines(CODECS[decision.old], decision.old_have).splitlines()}
    if decision.problem:
        result["foreign_forward_drop"] = decision.problem
    if adoption is not None:
        result["adopted"] = adopt.report(adoption)
    # The whole rulesets only when they tell something (a change, or diff mode asked for
    # them): at 10,000 forwards they are 1 MB each, which AnsibleModule and the controller
    # would walk, encode and decode on every no-change run. ``summary`` has the counts.
    if result["changed"] or module._diff:
        result.update(before=m.ruleset_to_dict(before), after=m.ruleset_to_dict(after))
    if result["changed"]:
        lines_before = ruleset_lines(codec, have_state) + _other_lines(decision) + (
            adopt.lines(adoption) if adoption else "")
        lines_after = ruleset_lines(codec, want)
        result["changes"] = change_lines(lines_before, lines_after, to_write)
        if module._diff:
            result["diff"] = {"before": lines_before, "after": lines_after,
                              "before_header": "%s (owned rules)" % _owners(decision),
                              "after_header": "%s (owned rules)" % backend}
    if waiting:
        module.warn("a change made with rollback_timeout is waiting for confirmation (token "
                    "%s): a real run is refused until it is confirmed or rolled back" % waiting[0])
    if module.check_mode:
        return result
    token = None
    previous = dict([(backend, have_state)] + ([(decision.old, decision.old_have)]
                                               if decision.old else []))
    if p["rollback_timeout"] and all_commands:
        # The way back, armed before the change: it fires unless confirmed in time. The
        # files to persist wait for the confirmation.
        token = host.arm_rollback(backend, have_state, p["rollback_timeout"],
                                  dict((path, files[path]) for path in to_write),
                                  others=[(b, s) for b, s in previous.items() if b != backend])
    touched = []
    try:
        for step in steps:
            touched.append(step)
            host.apply(step[1], step[2])
    except HostError as exc:
        try:
            if token:
                host.disarm(token)  # the previous rules are restored here, not by the timer
            # Backwards: the hand-made rules come back before ours go, so traffic never
            # meets a gap.
            for kind, step_backend, _commands in reversed(touched):
                if kind == "adopt":
                    host.apply("iptables", adopt.undo(adoption, dict(
                        (f, host.iptables_save(f)) for f in (4, 6))))
                else:
                    host.restore(step_backend, previous[step_backend])
        except HostError as again:
            exc = HostError("%s; restoring the previous rules also failed: %s" % (exc, again))
        result.update(failed=True, changed=False,
                      msg="apply failed, previous rules left in place: %s" % exc)
        return result
    if token:
        result.update(rollback_token=token, rollback_timeout=p["rollback_timeout"])
    else:
        host.write_files(files, to_write)
        host.forget_failed_rollbacks()
    result["conntrack_deleted"] = host.conntrack_delete(flush)
    return result


def _other_lines(decision):
    """The other backend's rules of ours, marked, for the diff: a switch removes them."""
    if not decision.old:
        return ""
    return "".join("[%s] %s\n" % (decision.old, line) for line in ruleset_lines(
        CODECS[decision.old], decision.old_have).splitlines())


def _owners(decision):
    return "%s and %s" % (decision.backend, decision.old) if decision.old else decision.backend
