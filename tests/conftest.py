from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer, run_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server per test module, on a free loopback port, with ``DEFAULT_APPS``."""
    tmp: Path = tmp_path_factory.mktemp("server")
    with run_server(tmp) as running:
        yield running
