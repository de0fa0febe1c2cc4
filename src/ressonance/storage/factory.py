"""open_database(url): the storage engine a URL names, not started yet.

``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (the path is what follows
``sqlite:///``, as in SQLAlchemy's URLs,
https://docs.sqlalchemy.org/en/20/core/engines.html#sqlite) and ``sqlite:///:memory:``;
``postgresql://user:password@host:port/database`` or ``postgres://…`` (libpq's connection URI,
https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ressonance.errors import ConfigError
from ressonance.storage.base import Database

SQLITE_PREFIX = "sqlite:///"


def check_url(url: str) -> str:
    """The engine a URL names (``"sqlite"`` or ``"postgres"``); :class:`ConfigError` says what
    is wrong with it otherwise."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme == "sqlite":
        if not url.startswith(SQLITE_PREFIX) or url == SQLITE_PREFIX:
            raise ConfigError(
                "storage URL: write sqlite:///path/to/file.db (relative), "
                "sqlite:////abs/path.db (absolute) or sqlite:///:memory:"
            )
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        if not urlsplit(url).hostname and "host=" not in url:
            raise ConfigError("storage URL: a postgresql:// URL needs a host")
        return "postgres"
    shown = f"'{scheme}'" if scheme else "none"
    raise ConfigError(
        f"storage URL: unsupported scheme {shown}; use sqlite:///path or postgresql://host/db"
    )


def redact(url: str) -> str:
    """``url`` without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def open_database(url: str) -> Database:
    if check_url(url) == "sqlite":
        from ressonance.storage.sqlite import SqliteDatabase

        return SqliteDatabase(url.removeprefix(SQLITE_PREFIX))
    from ressonance.storage.postgres import PostgresDatabase

    return PostgresDatabase(url)
