"""The :class:`AppStore` role: find an app by its public key or by its id."""

from __future__ import annotations

from typing import Protocol

from ressonance.models import App


class AppStore(Protocol):
    """Look-ups are async so that a database-backed store can answer from its cache or the
    database alike; they return None for an unknown app."""

    async def by_key(self, key: str) -> App | None: ...

    async def by_id(self, app_id: str) -> App | None: ...

    async def all(self) -> list[App]: ...
