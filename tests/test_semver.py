"""Semantic versions: parsing and precedence as semver.org defines them."""

from __future__ import annotations

import pytest

from llmship.release.semver import Version, is_semver


@pytest.mark.parametrize("text", ["1.0", "01.0.0", "1.0.0-", "v1.0.0", "1.0.0+", "a.b.c", ""])
def test_invalid(text: str) -> None:
    assert not is_semver(text)
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
        Version.parse(text)


def test_precedence_follows_semver_org() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "2.0.0",
        "10.0.0",
    ]
    parsed = [Version.parse(v) for v in ordered]
    shuffled = parsed[5:] + parsed[:5]
    assert sorted(shuffled) == parsed
    assert [str(v) for v in parsed] == ordered


def test_build_metadata_is_kept_but_does_not_order() -> None:
    v = Version.parse("1.2.3+build.7")
    assert str(v) == "1.2.3+build.7"
    assert not v < Version.parse("1.2.3") and not Version.parse("1.2.3") < v
