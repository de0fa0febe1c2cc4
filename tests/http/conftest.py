"""The API tests' fixture: a fresh in-process node and API per test."""

from __future__ import annotations

import pytest

from tests.support.api import InProcessApi


@pytest.fixture
def api() -> InProcessApi:
    return InProcessApi()
