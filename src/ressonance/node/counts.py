"""Subscription counts: this node's counts told to the others (once per loop tick), and
``pusher_internal:subscription_count`` to the subscribers of apps that enable it, cluster-wide,
at most once per tick per channel, and every few seconds for channels over
:data:`LARGE_CHANNEL` subscribers (docs/protocol.md)."""

from __future__ import annotations

from collections.abc import Callable

from ressonance.node.cluster import ClusterView
from ressonance.node.hub import Hub
from ressonance.node.schedule import soon
from ressonance.protocol import channels, messages

LARGE_CHANNEL = 100  # above this, subscription_count events are sent every few seconds

Key = tuple[str, str]  # (app id, channel)
Deliver = Callable[[str, str, str, str | None], object]  # app id, channel, message, exclude


class SubscriptionCounts:
    def __init__(
        self,
        hub: Hub,
        view: ClusterView,
        send: Callable[[], None],
        deliver: Deliver,
        end_tick_soon: Callable[[], None],
    ) -> None:
        self.hub = hub
        self.view = view
        self._send = send  # the cluster link's: what the view has to say goes out
        self._deliver = deliver
        self._end_tick_soon = end_tick_soon
        self._changed: set[Key] = set()  # this node's counts to tell the others
        self._tick: set[Key] = set()  # counts to send at the tick's end
        self._large: set[Key] = set()  # counts of large channels, sent every few seconds

    def local(self, app_id: str, channel: str) -> int:
        """Subscriptions to ``channel`` on this node."""
        state = self.hub.get(app_id)
        subscribers = state.channels.get(channel) if state is not None else None
        return len(subscribers) if subscribers else 0

    def total(self, app_id: str, channel: str) -> int:
        return self.local(app_id, channel) + self.view.remote_count(app_id, channel)

    def local_changed(self, app_id: str, channel: str) -> None:
        """A subscription here came or went: tell the other nodes (once per loop tick), and
        this node's subscribers."""
        first_change = not self._changed
        self._changed.add((app_id, channel))
        if first_change:
            soon(self.send_changed)
        self.changed(app_id, channel)

    def send_changed(self) -> None:
        changed, self._changed = self._changed, set()
        if changed:
            self.view.counts({key: self.local(*key) for key in changed})
            self._send()

    def changed(self, app_id: str, channel: str) -> None:
        """The cluster-wide count of ``channel`` changed: ``subscription_count`` to this node's
        subscribers of a non-presence channel, when the app enables it; channels over
        :data:`LARGE_CHANNEL` subscribers get it from :meth:`flush_large`."""
        state = self.hub.get(app_id)
        if state is None or not state.app.subscription_count or channel not in state.channels:
            return
        kind = channels.kind_of(channel)
        if kind.presence or kind.user:
            return
        if self.total(app_id, channel) > LARGE_CHANNEL:
            self._large.add((app_id, channel))
            return
        self._tick.add((app_id, channel))
        self._end_tick_soon()

    def end_tick(self) -> None:
        """The counts of this loop tick, each channel's once."""
        counts, self._tick = self._tick, set()
        for app_id, channel in counts:
            if self.local(app_id, channel):
                self._send_count(app_id, channel)

    def flush_large(self) -> None:
        """Send the pending counts of large channels (call every few seconds)."""
        pending, self._large = self._large, set()
        for app_id, channel in pending:
            if self.local(app_id, channel):
                self._send_count(app_id, channel)

    def _send_count(self, app_id: str, channel: str) -> None:
        frame = messages.subscription_count(channel, self.total(app_id, channel))
        self._deliver(app_id, channel, frame, None)
