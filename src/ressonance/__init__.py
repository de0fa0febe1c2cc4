"""Ressonance: a self-hosted real-time server that speaks the Pusher Channels protocol v7."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
