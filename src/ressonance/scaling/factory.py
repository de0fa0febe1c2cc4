"""The broker a URL names. The Redis and NATS modules are imported only when chosen, so a
single node on the memory broker never loads their libraries."""

from __future__ import annotations

from ressonance.errors import ConfigError
from ressonance.scaling.base import Broker
from ressonance.scaling.memory import MemoryBroker

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
NATS_SCHEMES = ("nats://", "tls://")
BROKER_SCHEMES = REDIS_SCHEMES + NATS_SCHEMES  # the URL forms; "memory" is the other broker
ACCEPTED = (
    "memory, redis://host:port/db, rediss://host:port/db, unix:///path/redis.sock, "
    "nats://host:port, tls://host:port"
)


def check_url(url: str) -> None:
    """Raises :class:`ConfigError` unless :func:`make_broker` knows ``url``: ``memory`` or a URL
    with one of :data:`BROKER_SCHEMES`. The configuration checks it at load, before any broker
    is made."""
    if url != "memory" and not url.startswith(BROKER_SCHEMES):
        raise ConfigError(f"broker {url!r} is not one of: {ACCEPTED}")


def make_broker(url: str, node_id: str, prefix: str) -> Broker:
    """``memory``, a Redis URL or a NATS URL; raises :class:`ConfigError` for anything else."""
    check_url(url)
    if url == "memory":
        return MemoryBroker(node_id)
    if url.startswith(REDIS_SCHEMES):
        from ressonance.scaling.redis import RedisBroker

        return RedisBroker(url, node_id, prefix)
    from ressonance.scaling.nats import NatsBroker  # one of NATS_SCHEMES, by check_url

    return NatsBroker(url, node_id, prefix)
