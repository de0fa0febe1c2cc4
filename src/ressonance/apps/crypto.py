"""App secrets at rest: encrypted with a key the database does not hold (docs/apps.md,
"Secrets at rest").

Pusher's signatures are HMACs, so the server needs each plain secret; a one-way hash would not
do. The secrets are therefore encrypted with Fernet (AES-128-CBC with an HMAC-SHA256 tag,
https://cryptography.io/en/latest/fernet/) under a key derived from ``RESSONANCE_SECRET_KEY``, or,
on a single node without it, from a key file created (0600) in the data directory. A stolen
database dump alone then reveals no secret; the key lives in the environment or on the node's
own disk. A stored value reads ``fernet:<token>``; a tampered value, or one encrypted under
another key, fails to open with :class:`SecretKeyMismatch` rather than yield a wrong secret.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ressonance.errors import ConfigError, RessonanceError

PREFIX = "fernet:"
MIN_KEY_LENGTH = 32
KEY_FILE = "secret.key"
_CONTEXT = b"ressonance app secrets v1\x00"


class SecretKeyMismatch(RessonanceError):
    """A stored secret does not open with this key: another ``RESSONANCE_SECRET_KEY`` sealed it,
    or the value was altered."""


class SecretBox:
    """Seals and opens app secrets with one key. Opening is cached by stored value, so that
    re-reading every app (the cache's safety net) decrypts only what changed."""

    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"secret_key must be at least {MIN_KEY_LENGTH} characters (for example the "
                'output of: python3 -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        digest = hashlib.sha256(_CONTEXT + key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._opened: dict[str, str] = {}

    def seal(self, secret: str) -> str:
        return PREFIX + self._fernet.encrypt(secret.encode()).decode("ascii")

    def open(self, stored: str) -> str:
        secret = self._opened.get(stored)
        if secret is not None:
            return secret
        if not stored.startswith(PREFIX):
            raise SecretKeyMismatch("the stored secret is not in the fernet: form")
        try:
            secret = self._fernet.decrypt(stored[len(PREFIX) :].encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise SecretKeyMismatch(
                "a stored secret does not open with this secret key: RESSONANCE_SECRET_KEY "
                "differs from the one it was stored with"
            ) from exc
        if len(self._opened) > 100_000:  # deleted apps' values must not accumulate forever
            self._opened.clear()
        self._opened[stored] = secret
        return secret


def key_from_file(data_dir: Path) -> str:
    """The key of ``data_dir/secret.key``, made (0600, in a 0700 directory) when missing;
    :class:`ConfigError` when it cannot be made or read."""
    try:
        return _key_file(data_dir / KEY_FILE)
    except OSError as exc:
        raise ConfigError(
            f"data_dir {data_dir}: cannot use {KEY_FILE}: {exc.strerror or exc} (set data_dir "
            "to a writable directory, or RESSONANCE_SECRET_KEY)"
        ) from None


def _key_file(path: Path) -> str:
    data_dir = path.parent
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another worker or node made it first
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
    for _ in range(50):  # a racing writer may not have written its line yet
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key
        time.sleep(0.01)
    raise ConfigError(f"{path} is empty: delete it to make a new key (no app secret opens then)")
