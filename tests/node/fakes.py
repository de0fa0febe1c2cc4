"""A recording socket and a manual clock for node tests."""

from __future__ import annotations

import json
from typing import Any

from ressonance.protocol.session import Session


class FakeSocket:
    """Records what the node sends (decoded) and how it was closed."""

    def __init__(self) -> None:
        self.session: Session = None  # type: ignore[assignment]
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, frame: bytes) -> None:
        # server frames are unmasked and short here: header is 2 or 4 bytes
        n = frame[1] & 0x7F
        payload = frame[4:] if n == 126 else frame[2:]
        self.frames.append(json.loads(payload))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def events(self) -> list[str]:
        return [f["event"] for f in self.frames]

    def take(self) -> list[dict[str, Any]]:
        frames, self.frames = self.frames, []
        return frames


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
