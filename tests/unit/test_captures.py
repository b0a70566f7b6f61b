"""The kernel captures in tests/unit/fixtures: one complete set per Debian release, each made by
that release's own nft and iptables (capture.sh), so the parsers read what each release prints."""
import json

import pytest

from nat_helpers import CAPTURE_RELEASES, FIXTURES, fixture_text

CONFIGS = sorted(p.name[:-len(".config.json")] for p in FIXTURES.glob("*.config.json"))
SUFFIXES = ("nft.json", "nft.txt", "ruleset.json", "ruleset.txt", "iptables-save",
            "ip6tables-save")
# The nft version each release ships; the JSON captures name the nft that wrote them.
NFT_VERSIONS = {"bookworm": "1.0.", "trixie": "1.1."}


def test_configs_and_releases_are_there():
    assert "gateway" in CONFIGS
    assert set(CAPTURE_RELEASES) == set(NFT_VERSIONS)


@pytest.mark.parametrize("release", CAPTURE_RELEASES)
@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_is_captured_by_the_release_s_own_nft(release, name):
    for suffix in SUFFIXES:
        assert fixture_text("%s.%s" % (name, suffix), release)
    for dump in ("nft.json", "ruleset.json"):
        first = json.loads(fixture_text("%s.%s" % (name, dump), release))["nftables"][0]
        assert first["metainfo"]["version"].startswith(NFT_VERSIONS[release])
