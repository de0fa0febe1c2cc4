from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.receiver import Receiver
from tests.support.server import RunningServer, run_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server per test module, on a free loopback port, with ``DEFAULT_APPS``."""
    tmp: Path = tmp_path_factory.mktemp("server")
    with run_server(tmp) as running:
        yield running


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on 127.0.0.1 answering 200 (tests/support/receiver.py)."""
    r = Receiver()
    await r.start()
    yield r
    await r.close()
