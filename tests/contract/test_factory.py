"""make_broker: the broker each URL form names, and a clear error for anything else."""

from __future__ import annotations

import pytest

from ressonance.errors import ConfigError
from ressonance.scaling.factory import make_broker
from ressonance.scaling.memory import MemoryBroker
from ressonance.scaling.nats import NatsBroker
from ressonance.scaling.redis import RedisBroker


def test_memory() -> None:
    broker = make_broker("memory", "n1", "p")
    assert isinstance(broker, MemoryBroker) and broker.node_id == "n1"


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6390/0", "rediss://cache:6380/1", "unix:///run/redis.sock"]
)
def test_redis_urls(url: str) -> None:
    broker = make_broker(url, "n1", "app")
    assert isinstance(broker, RedisBroker)
    assert (broker.node_id, broker.channel) == ("n1", "app:bus")


@pytest.mark.parametrize("url", ["nats://127.0.0.1:4299", "tls://nats.internal:4222"])
def test_nats_urls(url: str) -> None:
    broker = make_broker(url, "n1", "app")
    assert isinstance(broker, NatsBroker)
    assert (broker.node_id, broker.subject) == ("n1", "app.bus")


@pytest.mark.parametrize("url", ["", "Memory", "http://redis:6379", "127.0.0.1:6379", "kafka://x"])
def test_anything_else_is_a_config_error_listing_the_accepted_forms(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_broker(url, "n1", "p")
    for form in ("memory", "redis://", "rediss://", "unix://", "nats://", "tls://"):
        assert form in str(caught.value)
