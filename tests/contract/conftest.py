"""One Broker suite for every implementation: ``memory`` (brokers on one MemoryBus), ``redis``
and ``nats`` (a private server per module, on a free port)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from ressonance.scaling.base import Broker
from ressonance.scaling.factory import make_broker
from ressonance.scaling.memory import MemoryBroker, MemoryBus
from tests.support.services import Service, nats_server, redis_server

WAIT = 10.0  # the bound on every wait for traffic


@dataclass
class Recorder:
    """A BrokerHandler that writes down what it is given."""

    deliveries: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    controls: list[tuple[str, str]] = field(default_factory=list)
    links: list[bool] = field(default_factory=list)

    def deliver(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        self.deliveries.append((app_id, channel, message, exclude))

    def control(self, origin: str, payload: str) -> None:
        self.controls.append((origin, payload))

    def link_changed(self, up: bool) -> None:
        self.links.append(up)


async def eventually(
    check: Callable[[], bool], timeout: float = WAIT, what: Callable[[], str] | None = None
) -> float:
    """Poll ``check`` until true; return the seconds it took, fail after ``timeout`` saying
    ``what()`` (the state then)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s: {what() if what else check}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def quiet(seconds: float = 0.3) -> None:
    """Give traffic that should not arrive the time to arrive anyway."""
    await asyncio.sleep(seconds)


@pytest.fixture(scope="module")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with redis_server(tmp_path_factory.mktemp("redis")) as service:
        yield service


@pytest.fixture(scope="module")
def nats_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with nats_server(tmp_path_factory.mktemp("nats")) as service:
        yield service


class Cluster:
    """Brokers of one implementation, all on one bus (one prefix unless told otherwise)."""

    def __init__(self, kind: str, service: Service | None) -> None:
        self.kind = kind
        self.service = service
        self.prefix = f"t{uuid.uuid4().hex[:8]}"
        self.bus = MemoryBus()
        self.made: list[Broker] = []

    def broker(self, node_id: str, prefix: str | None = None) -> Broker:
        """A new broker, not started."""
        if self.service is None:
            made: Broker = MemoryBroker(node_id, self.bus)
        else:
            made = make_broker(self.service.url, node_id, prefix or self.prefix)
        self.made.append(made)
        return made

    async def started(self, node_id: str, prefix: str | None = None) -> tuple[Broker, Recorder]:
        made, recorder = self.broker(node_id, prefix), Recorder()
        await made.start(recorder)
        return made, recorder

    async def close(self) -> None:
        for made in self.made:
            await asyncio.wait_for(made.close(), WAIT)


@pytest_asyncio.fixture(params=["memory", "redis", "nats"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    kind: str = request.param
    service = None if kind == "memory" else request.getfixturevalue(f"{kind}_service")
    if service is not None:
        service.start()  # a test before may have stopped it
    made = Cluster(kind, service)
    try:
        yield made
    finally:
        await made.close()
