from __future__ import annotations

import pytest

from ressonance.protocol import channels


@pytest.mark.parametrize(
    ("name", "private", "presence", "encrypted", "cache"),
    [
        ("public", False, False, False, False),
        ("private-a", True, False, False, False),
        ("private-encrypted-a", True, False, True, False),
        ("private-encrypted-cache-a", True, False, True, True),
        ("private-cache-a", True, False, False, True),
        ("presence-a", False, True, False, False),
        ("presence-cache-a", False, True, False, True),
        ("cache-a", False, False, False, True),
        ("foo-private-x", False, False, False, False),  # prefixes match from the start only
        ("privatex", False, False, False, False),
    ],
)
def test_kind_by_prefix(
    name: str, private: bool, presence: bool, encrypted: bool, cache: bool
) -> None:
    kind = channels.kind_of(name)
    assert (kind.private, kind.presence, kind.encrypted, kind.cache) == (
        private,
        presence,
        encrypted,
        cache,
    )


def test_names() -> None:
    assert channels.is_valid_name("a-Z_0=@,.;")
    assert channels.is_valid_name("x" * 200)
    assert not channels.is_valid_name("x" * 201)
    assert not channels.is_valid_name("")
    assert not channels.is_valid_name("has space")
    assert not channels.is_valid_name("#other")
    assert not channels.is_valid_name(None)
    assert not channels.is_valid_name(12)
    assert channels.is_valid_name("#server-to-user-42")
    assert not channels.is_valid_name("#server-to-user-")
    assert channels.kind_of("#server-to-user-42").user
