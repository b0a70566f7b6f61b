"""A release, rehearsed on a copy of the checkout: the next minor version's CHANGELOG.rst holds
every fragment since 1.0.0, and the collection tarball carries it.

This is what the release steps in the README do: bump galaxy.yml to the next minor version,
add a release_summary fragment, run `antsibull-changelog release`, build. Run with
`make release-check`.
"""
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("major_changes", "minor_changes", "breaking_changes", "deprecated_features",
            "removed_features", "security_fixes", "bugfixes", "known_issues")


def _run(argv, cwd):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, "%s failed:\n%s%s" % (argv, done.stdout, done.stderr)
    return done


def _words(text):
    return " ".join(text.split())


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(copy of the checkout after the release, next version, fragments before it)."""
    copy = tmp_path_factory.mktemp("release") / "ipmasq.gateway"
    copy.mkdir()
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                 ROOT).stdout.split("\0")
    for name in files:
        if name and (ROOT / name).exists() and not (ROOT / name).is_dir():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name, follow_symlinks=False)

    galaxy = copy / "galaxy.yml"
    version = yaml.safe_load(galaxy.read_text(encoding="utf-8"))["version"]
    major, minor, _patch = (int(part) for part in version.split("."))
    following = "%d.%d.0" % (major, minor + 1)
    galaxy.write_text(re.sub(r"(?m)^version: .*$", "version: %s" % following,
                             galaxy.read_text(encoding="utf-8")), encoding="utf-8")
    fragments = {p.name: yaml.safe_load(p.read_text(encoding="utf-8"))
                 for p in (copy / "changelogs" / "fragments").glob("*.yml")}
    (copy / "changelogs" / "fragments" / ("%s.yml" % following)).write_text(
        "release_summary: Release rehearsal.\n", encoding="utf-8")
    _run(["antsibull-changelog", "release"], copy)
    _run(["ansible-galaxy", "collection", "build", "--output-path", str(copy / "dist")], copy)
    return copy, following, fragments


def test_every_fragment_is_in_the_changelog_of_the_next_minor_version(released):
    copy, following, fragments = released
    assert fragments, "no changelog fragments since the last release"
    changelog = (copy / "CHANGELOG.rst").read_text(encoding="utf-8")
    assert "This changelog describes changes after version 1.0.0." in changelog
    assert re.search(r"(?m)^v%s\n=+$" % re.escape(following), changelog)
    text = _words(changelog)
    for name, fragment in fragments.items():
        for section in SECTIONS:
            for entry in fragment.get(section, []):
                assert _words(entry) in text, "%s: %s is missing" % (name, entry[:60])
    release = yaml.safe_load((copy / "changelogs" / "changelog.yaml").read_text())
    assert sorted(release["releases"][following]["fragments"]) == sorted(
        list(fragments) + ["%s.yml" % following])
    assert list((copy / "changelogs" / "fragments").glob("*.yml")) == []


def test_the_tarball_carries_the_changelog(released):
    copy, following, _fragments = released
    tarball = copy / "dist" / ("ipmasq-gateway-%s.tar.gz" % following)
    with tarfile.open(tarball) as tar:
        packed = tar.extractfile("CHANGELOG.rst").read().decode("utf-8")
    assert packed == (copy / "CHANGELOG.rst").read_text(encoding="utf-8")
