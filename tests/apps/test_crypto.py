"""SecretBox and the key file (ressonance.apps.crypto): sealed values open only with the key
that sealed them, a tampered value fails rather than yield a wrong secret, short keys are
refused, and the key file is made once, private, and reused."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from ressonance.apps.crypto import (
    KEY_FILE,
    MIN_KEY_LENGTH,
    PREFIX,
    SecretBox,
    SecretKeyMismatch,
    key_from_file,
)
from ressonance.errors import ConfigError

KEY = "a-test-secret-key-of-at-least-32-characters"
OTHER = "another-secret-key-of-at-least-32-characters"


@pytest.mark.parametrize("secret", ["short-1", "ressonance-dev-secret", "!~" * 128, "ünïcode ✓"])
def test_a_sealed_secret_opens_with_the_same_key_only(secret: str) -> None:
    sealed = SecretBox(KEY).seal(secret)
    assert sealed.startswith(PREFIX) and secret not in sealed
    assert SecretBox(KEY).open(sealed) == secret  # another object, the same key
    with pytest.raises(SecretKeyMismatch):
        SecretBox(OTHER).open(sealed)


def test_sealing_twice_gives_two_values() -> None:
    box = SecretBox(KEY)
    first, second = box.seal("same"), box.seal("same")
    assert first != second
    assert box.open(first) == box.open(second) == "same"


def test_a_tampered_or_foreign_value_is_refused_without_the_secret() -> None:
    box = SecretBox(KEY)
    sealed = box.seal("the-secret")
    token = sealed[len(PREFIX) :]
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    raw_fernet = Fernet(Fernet.generate_key()).encrypt(b"the-secret").decode()
    for stored in (
        PREFIX + flipped,
        PREFIX + token[:-4],
        PREFIX + "not base64 at all",
        PREFIX,
        "the-secret",  # a plain value: not accepted as a secret
        token,  # the token without its prefix
        PREFIX + raw_fernet,  # Fernet under a key not derived from ours
    ):
        with pytest.raises(SecretKeyMismatch) as caught:
            box.open(stored)
        assert "the-secret" not in str(caught.value)


def test_the_key_is_derived_not_used_as_is() -> None:
    """Two keys sharing their first 32 characters are different keys."""
    sealed = SecretBox("k" * MIN_KEY_LENGTH).seal("x")
    with pytest.raises(SecretKeyMismatch):
        SecretBox("k" * MIN_KEY_LENGTH + "k").open(sealed)


@pytest.mark.parametrize("key", ["", "short", "k" * (MIN_KEY_LENGTH - 1)])
def test_a_short_key_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=str(MIN_KEY_LENGTH)) as caught:
        SecretBox(key)
    if key:
        assert key not in str(caught.value)


def test_the_key_file_is_made_private_once_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data" / "dir"
    key = key_from_file(data)
    assert len(key) >= MIN_KEY_LENGTH
    path = data / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert key_from_file(data) == key
    SecretBox(key)  # long enough for a box
    other = tmp_path / "other"
    assert key_from_file(other) != key


def test_writers_racing_for_the_key_file_agree(tmp_path: Path) -> None:
    keys: list[str] = []
    threads = [
        threading.Thread(target=lambda: keys.append(key_from_file(tmp_path / "data")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(keys) == 8 and len(set(keys)) == 1


def test_an_empty_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        key_from_file(tmp_path)
