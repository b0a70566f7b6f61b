"""Fail unless every verify step of a Molecule scenario ran tests.

Usage: python scripts/check-verify-log.py SCENARIO LOG

LOG holds one line per testinfra session, ``ran=N skipped=N``, written by the testbed plugin
(.config/molecule/testinfra/ipmasq_testbed.py). The scenario's test sequence says how many
verify steps there were. Molecule passes a scenario whose tests directory holds no test
("Skipping, no tests found"): then there is no line at all, and this check fails.
"""
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# molecule's own default test sequence runs verify once
DEFAULT_VERIFY_STEPS = 1


def verify_steps(scenario):
    for path in (ROOT / "molecule" / scenario / "molecule.yml", ROOT / ".config" / "molecule" / "config.yml"):
        sequence = ((yaml.safe_load(path.read_text()) or {}).get("scenario") or {}).get("test_sequence")
        if sequence is not None:
            return sequence.count("verify")
    return DEFAULT_VERIFY_STEPS


def main(scenario, log):
    expected = verify_steps(scenario)
    path = Path(log)
    lines = path.read_text().splitlines() if path.exists() else []
    sessions = [dict(field.split("=", 1) for field in line.split()) for line in lines if line.strip()]
    problems = []
    if len(sessions) != expected:
        problems.append("%d verify step(s) in the test sequence, but %d testinfra session(s) ran"
                        % (expected, len(sessions)))
    problems += ["verify step %d ran no test (%s skipped)" % (number, session.get("skipped", "?"))
                 for number, session in enumerate(sessions, 1) if int(session.get("ran", 0)) == 0]
    if problems:
        print("molecule/%s: %s" % (scenario, "; ".join(problems)), file=sys.stderr)
        return 1
    print("molecule/%s: %s" % (scenario, ", ".join(
        "verify %d ran %s test(s)" % (n, s["ran"]) for n, s in enumerate(sessions, 1))))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
