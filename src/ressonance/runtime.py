"""Runs the server on uvloop (the only module that imports it) where it is available."""

from __future__ import annotations

import asyncio

from ressonance.config import Settings
from ressonance.server import prepare as prepare_store
from ressonance.server import serve

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
    uvloop = None  # type: ignore[assignment]


def run(settings: Settings) -> None:
    if uvloop is not None:
        uvloop.run(serve(settings))
    else:  # pragma: no cover
        asyncio.run(serve(settings))


def prepare(settings: Settings) -> Settings:
    """Open and migrate the app store before serving (before any worker starts)."""
    return asyncio.run(prepare_store(settings))
