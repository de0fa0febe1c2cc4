"""Users: sign-in (``pusher:signin``), the watchlists of online/offline events, and
``terminate_connections`` across the cluster (docs/protocol.md)."""

from __future__ import annotations

from collections.abc import Callable

from ressonance.node.cluster import ClusterView
from ressonance.node.hub import AppState, Hub, Socket
from ressonance.protocol import codes, messages
from ressonance.protocol.framing import text_frame
from ressonance.protocol.session import SignIn

Fail = Callable[[Socket, int, str], None]


class Users:
    def __init__(self, hub: Hub, view: ClusterView, send: Callable[[], None], fail: Fail) -> None:
        self.hub = hub
        self.view = view
        self._send = send  # the cluster link's
        self._fail = fail

    def sign_in(self, state: AppState, socket: Socket, action: SignIn) -> None:
        session = socket.session
        socket.send(text_frame(messages.signin_success(action.user_data)))
        if action.watchlist_truncated:
            socket.send(
                text_frame(messages.error(codes.WATCHLIST_LIMIT, "Watchlist limit exceeded"))
            )
        if session.user_id is None:
            session.user_id = action.user_id
            sockets = state.users.setdefault(action.user_id, set())
            sockets.add(socket)
            if len(sockets) == 1:
                self._notify_watchers(state, action.user_id, "online")
            state.watch(socket, action.watchlist)
            online = [w for w in action.watchlist if w in state.users]
            if online:
                socket.send(text_frame(messages.watchlist_events("online", online)))

    def sign_out(self, state: AppState, socket: Socket, user_id: str) -> None:
        sockets = state.users.get(user_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del state.users[user_id]
                self._notify_watchers(state, user_id, "offline")
        state.unwatch(socket)

    def _notify_watchers(self, state: AppState, user_id: str, name: str) -> None:
        watchers = state.watchers.get(user_id)
        if watchers:
            frame = text_frame(messages.watchlist_events(name, [user_id]))
            for watcher in watchers:
                watcher.send(frame)

    def terminate(self, app_id: str, user_id: str) -> int:
        """Close every signed-in socket of ``user_id`` in the cluster (HTTP
        ``terminate_connections``); returns how many were on this node."""
        self.view.terminate(app_id, user_id)
        self._send()
        return self.terminate_here(app_id, user_id)

    def terminate_here(self, app_id: str, user_id: str) -> int:
        state = self.hub.get(app_id)
        sockets = list(state.users.get(user_id, ())) if state else []
        for socket in sockets:
            self._fail(socket, codes.UNAUTHORIZED, "Connection terminated by the app")
        return len(sockets)
