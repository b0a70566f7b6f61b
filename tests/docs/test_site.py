"""The docs site that `make docs` builds, as headless Chromium renders it.

Chromium loads each page from disk, runs its scripts and prints the resulting DOM; the tests
read that DOM. It also takes a screenshot of the nat_rules page (docs/ keeps a copy). Host
names resolve to nothing, so the browser reaches no network.

Run with `make docs-check` (after `make docs`); IPMASQ_DOCS_HTML names another built site.
"""
import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("IPMASQ_DOCS_HTML", ROOT / ".build" / "docs" / "html"))
SCREENSHOT = SITE.parent / "screenshots" / "nat_rules_module.png"
WINDOW = (1280, 1600)
MODULE_ANCHOR = "ansible-collections-ipmasq-gateway-nat-rules-module-parameter-"
ROLES = ("forwarding", "masquerade", "port_forward", "gateway")


def _chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium on PATH: `make deps` installs it")


def _browse(page, tmp_path, *args):
    """Run headless Chromium on a page of the site; return its stdout."""
    path = SITE / page
    assert path.is_file(), "%s is missing: run `make docs` first" % path
    argv = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--user-data-dir=%s" % (tmp_path / "profile"),
            "--window-size=%d,%d" % WINDOW] + list(args) + [path.as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Page(HTMLParser):
    """What a test needs of a rendered page: title, headings, links, tables, code, ids."""

    def __init__(self, dom):
        super().__init__()
        self.title = ""
        self.h1 = []
        self.links = set()
        self.table_classes = []
        self.ids = set()
        self.code = []
        self._in = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.add(attrs["href"].split("#")[0])
        if tag == "a" and "headerlink" in (attrs.get("class") or ""):
            self._in.append("headerlink")  # the theme's link icon is no part of the title
        if tag == "table":
            self.table_classes.append(attrs.get("class", ""))
        if tag in ("title", "h1", "pre"):
            self._in.append(tag)
            if tag == "h1":
                self.h1.append("")
            if tag == "pre":
                self.code.append("")

    def handle_endtag(self, tag):
        if self._in and self._in[-1] in (tag, "headerlink" if tag == "a" else None):
            self._in.pop()

    def handle_data(self, data):
        if not self._in:
            return
        if self._in[-1] == "title":
            self.title += data
        elif self._in[-1] == "h1":
            self.h1[-1] += data
        elif self._in[-1] == "pre":
            self.code[-1] += data


def _module_options():
    source = (ROOT / "plugins" / "modules" / "nat_rules.py").read_text(encoding="utf-8")
    text = source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0]
    return sorted(yaml.safe_load(text)["options"])


def test_index_leads_to_the_readme_the_reference_and_the_benchmarks(tmp_path):
    page = Page(_browse("index.html", tmp_path, "--dump-dom"))
    assert page.title.startswith("ipmasq.gateway")
    assert [h.strip() for h in page.h1] == ["ipmasq.gateway"]
    assert {"readme.html", "gateway/index.html", "benchmarks.html"} <= page.links


def test_collection_index_lists_the_module_the_roles_and_the_guide(tmp_path):
    page = Page(_browse("gateway/index.html", tmp_path, "--dump-dom"))
    wanted = {"nat_rules_module.html", "docsite/migrating.html"}
    wanted.update("%s_role.html" % role for role in ROLES)
    assert wanted <= page.links


def test_nat_rules_page_shows_title_options_and_examples(tmp_path):
    page = Page(_browse("gateway/nat_rules_module.html", tmp_path, "--dump-dom"))
    assert page.title.startswith("ipmasq.gateway.nat_rules module")
    assert any("ansible-option-table" in classes for classes in page.table_classes)
    options = {o.replace("_", "-") for o in _module_options()}
    rows = {i[len(MODULE_ANCHOR):] for i in page.ids if i.startswith(MODULE_ANCHOR)}
    assert options <= rows, "options without a row: %s" % sorted(options - rows)
    assert {"examples", "return-values", "parameters"} <= page.ids
    assert any("ipmasq.gateway.nat_rules:" in code for code in page.code)


def test_nat_rules_page_screenshot(tmp_path):
    shot = tmp_path / "nat_rules_module.png"
    _browse("gateway/nat_rules_module.html", tmp_path, "--screenshot=%s" % shot,
            "--hide-scrollbars")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == WINDOW
    # A blank page compresses to a few kilobytes; text, tables and colours do not.
    assert len(data) > 60000, "the screenshot is %d bytes: is the page blank?" % len(data)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
