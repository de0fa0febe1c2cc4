"""The broker a URL names. The Redis and NATS modules are imported only when chosen, so a
single node on the memory broker never loads their libraries."""

from __future__ import annotations

from ressonance.errors import ConfigError
from ressonance.scaling.base import Broker
from ressonance.scaling.memory import MemoryBroker

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
NATS_SCHEMES = ("nats://", "tls://")
ACCEPTED = (
    "memory, redis://host:port/db, rediss://host:port/db, unix:///path/redis.sock, "
    "nats://host:port, tls://host:port"
)


def make_broker(url: str, node_id: str, prefix: str) -> Broker:
    """``memory``, a Redis URL or a NATS URL; raises :class:`ConfigError` for anything else."""
    if url == "memory":
        return MemoryBroker(node_id)
    if url.startswith(REDIS_SCHEMES):
        from ressonance.scaling.redis import RedisBroker

        return RedisBroker(url, node_id, prefix)
    if url.startswith(NATS_SCHEMES):
        from ressonance.scaling.nats import NatsBroker

        return NatsBroker(url, node_id, prefix)
    raise ConfigError(f"broker {url!r} is not one of: {ACCEPTED}")
