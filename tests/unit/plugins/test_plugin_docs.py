"""Every plugin's DOCUMENTATION, EXAMPLES and RETURN is YAML that ansible-doc can read.

A ': ' or ' #' inside a plain (unquoted) description line ends the scalar there; ansible-doc
then shows nothing for the plugin, and only the sanity run would notice.
"""
import ast
from pathlib import Path

import pytest
import yaml

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"
FILES = sorted(p for kind in ("modules", "filter", "doc_fragments", "action")
               for p in (PLUGINS / kind).glob("*.py") if p.name != "__init__.py")


def _doc_strings(path):
    """{name: text} of the module-level DOCUMENTATION, EXAMPLES and RETURN strings (and of
    a doc fragment's class attributes)."""
    out = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                    out[target.id] = node.value.value
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.parent.name + "/" + p.name for p in FILES])
def test_the_documentation_is_yaml(path):
    for name, text in _doc_strings(path).items():
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            pytest.fail("%s %s: %s" % (path.name, name, exc))
