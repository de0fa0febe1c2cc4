"""Fixtures shared by the node tests: a manual clock and an in-process bus."""

from __future__ import annotations

import pytest

from ressonance.scaling.memory import MemoryBus
from tests.node.fakes import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bus() -> MemoryBus:
    return MemoryBus()
