"""In-process brokers: one node alone (the default), or several nodes in one process (tests)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial

from ressonance.scaling.base import BrokerHandler


class MemoryBus:
    """What connects in-process :class:`MemoryBroker` instances. Deliveries are queued and run
    one after another, in order, never re-entering a handler that is still sending."""

    def __init__(self) -> None:
        self.brokers: list[MemoryBroker] = []
        self._queue: deque[Callable[[], None]] = deque()
        self._running = False

    def post(self, sender: MemoryBroker, deliver: Callable[[BrokerHandler], None]) -> None:
        for broker in self.brokers:
            if broker is not sender and broker.handler is not None:
                self._queue.append(partial(deliver, broker.handler))
        if self._running:
            return
        self._running = True
        try:
            while self._queue:
                self._queue.popleft()()
        finally:
            self._running = False


class MemoryBroker:
    """The single-node default (alone on its own bus), and a broker for in-process clusters."""

    def __init__(self, node_id: str = "local", bus: MemoryBus | None = None) -> None:
        self.node_id = node_id
        self.bus = bus if bus is not None else MemoryBus()
        self.handler: BrokerHandler | None = None
        self.bus.brokers.append(self)

    async def start(self, handler: BrokerHandler) -> None:
        self.handler = handler

    # delivery is a function call: always up, nothing is queued or lost
    connected = True
    full = False
    dropped = link_losses = reconnects = 0

    def publish(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        self.bus.post(self, lambda h: h.deliver(app_id, channel, message, exclude))

    def send(self, payload: str) -> None:
        origin = self.node_id
        self.bus.post(self, lambda h: h.control(origin, payload))

    async def close(self) -> None:
        self.handler = None
        if self in self.bus.brokers:
            self.bus.brokers.remove(self)
