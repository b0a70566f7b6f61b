"""Shared by the unit and integration layers: a run in which no test ran is a failure.

pytest exits 0 when every collected test was skipped, which would let a layer pass
while proving nothing. Here such a run exits 5 (pytest's "no tests ran") instead.
The one exception is the integration layer's explicit opt-out (IPMASQ_ALLOW_SKIP, see
integration/prerequisites.py), which ``make test`` refuses.
"""
import os

import pytest

OPT_OUT = "IPMASQ_ALLOW_SKIP"
_ran = []


def pytest_runtest_logreport(report):
    # a test ran when its call phase ran (passed or failed), or its setup failed
    if (report.when == "call" and not report.skipped) or (report.when == "setup" and report.failed):
        _ran.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if exitstatus != pytest.ExitCode.OK or _ran or os.environ.get(OPT_OUT):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("no test ran (%d collected, all skipped or deselected): a layer that "
                            "runs no test proves nothing" % session.testscollected, red=True)
    session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
