"""Unit tests of ipmasq.gateway: make the collection and the shared helpers importable.

The collection is imported as ``ansible_collections.ipmasq.gateway`` through the symlink
``.build/collections/ansible_collections/ipmasq/gateway -> ../../../..`` (``make unit`` sets
PYTHONPATH to it). When that name is not importable, this file adds the path itself and
creates the symlink if needed, so a plain ``pytest tests/unit`` from the repository root works.
"""
import importlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".build" / "collections"


def _importable():
    try:
        importlib.import_module("ansible_collections.ipmasq.gateway.plugins.module_utils._nat")
        return True
    except ImportError:
        return False


if not _importable():
    link = COLLECTIONS / "ansible_collections" / "ipmasq" / "gateway"
    if not os.path.lexists(str(link)):
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("../../../..", str(link))
    sys.path.insert(0, str(COLLECTIONS))
    importlib.invalidate_caches()
    assert _importable(), "cannot import ansible_collections.ipmasq.gateway from %s" % COLLECTIONS

# The shared helpers and hypothesis strategies live next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# pylint: disable=wrong-import-position
from hypothesis import settings  # noqa: E402
from nat_helpers import CODECS  # noqa: E402

# CI (.ci/run) sets IPMASQ_HYPOTHESIS_DERANDOMIZE: hypothesis then tries the same examples on
# every run, so a CI result can be reproduced. Elsewhere each run tries new examples.
if os.environ.get("IPMASQ_HYPOTHESIS_DERANDOMIZE"):
    settings.register_profile("derandomized", derandomize=True)
    settings.load_profile("derandomized")


@pytest.fixture(params=sorted(CODECS))
def codec(request):
    """Each test using it runs once per backend."""
    return CODECS[request.param]
