"""What a listener's WebSockets are served by: the :class:`Gateway` role.

The transport knows the application only through two narrow things: a
:data:`~ressonance.exchange.RequestHandler` for HTTP requests and a :class:`Gateway` for
WebSockets (at the composition root, the node's). A listener with no gateway (the admin one)
answers an upgrade with 404. The transport never imports what implements either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ressonance.transport.edge import Edge


class Gateway(Protocol):
    """The life of a WebSocket, as the application sees it.

    :meth:`admit` runs once the upgrade request is valid, before the 101 goes out: it raises
    :class:`~ressonance.errors.PusherError` to refuse (the client then gets ``pusher:error``
    and a close with its code). :meth:`connect` follows the 101 with what :meth:`admit`
    returned; :meth:`receive` gets every text message, :meth:`disconnect` is called once when
    the connection ends, whoever ended it. :meth:`fail` reports an error to the peer (and
    closes when the code is fatal): the transport uses it for pong time-outs and drains.
    """

    async def admit(self, key: str, protocol: str | None, origin: str | None) -> Any: ...

    def connect(self, socket: Edge, admission: Any) -> object: ...

    def receive(self, socket: Edge, text: str) -> None: ...

    def disconnect(self, socket: Edge) -> None: ...

    def fail(self, socket: Edge, code: int, message: str) -> None: ...
