"""Which webhook events happen, cluster-wide (docs/webhooks.md, "Cluster-wide truth").

Every node keeps the same picture of the cluster's channels and presence members (the cluster
view), so every node can tell when a channel's first subscriber *in the cluster* arrives or its
last one leaves, and when a user's first or last socket in a presence channel does. Every node
follows those transitions; one node sends them: the **leader**, the live node with the smallest
id (:meth:`~ressonance.node.cluster.ClusterView.leader`). When a node dies, the others drop its
sockets from their view (after ``node_timeout``), which ends its users' presence and may empty
its channels; the leader, itself or a new one, sends those ``member_removed`` and
``channel_vacated``.

``channel_vacated`` and ``member_removed`` wait :data:`DELAY` seconds and are cancelled when the
channel is occupied again or the user comes back in that time (a page reload sends nothing).
``subscription_count`` goes once per loop tick per channel, and every few seconds (the node's
housekeeping) for channels over :data:`LARGE_CHANNEL` subscribers. ``client_event`` and
``cache_miss`` happen on one node, which sends them itself: a client event of an app in
:attr:`WebhookSource.client_hooks` is recorded by the node's receive path itself, one
``extend`` of the list :meth:`WebhookSource.client_log` gave the node's state of the app.

Limits, stated in docs/webhooks.md: a node that starts learns the cluster's picture quietly for
:data:`QUIET` seconds (sending nothing for channels already occupied); a transition that fires
on a node that is not the leader is kept for a while, and sent if the node becomes the leader
soon after (the leader may have died before sending it): a leader change may send such an event
twice, never silently lose it.

The ``sink`` (:class:`Sink`, the server's :class:`~ressonance.webhooks.recorder.Recorder`) is
called on the event loop and must not block. A client event is handed over as the frame its
subscribers got, with the sender's socket id: the sink keeps it as it is, and the webhook event
is read from it later, off the hot path.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ressonance.models import App, Webhook, WebhookEvent
from ressonance.node.cluster import ClusterView
from ressonance.node.schedule import soon
from ressonance.protocol import channels

DELAY = 3.0  # seconds channel_vacated and member_removed wait for a comeback
QUIET = 3.0  # seconds a starting node learns the cluster before it sends occupied/added
LARGE_CHANNEL = 100  # above this many subscribers, subscription_count every few seconds
RECENT = 10_000  # events kept by a node that is not the leader, in case it becomes one

Key = tuple[str, str]  # (app id, channel)


class Sink(Protocol):
    def log(self, app_id: str) -> list[str]:
        """The list the node extends with the sender's socket id and the frame of each client
        event of ``app_id`` it records (the same list every time)."""
        ...

    def event(self, app: App, event: WebhookEvent) -> None:
        """A webhook event of ``app`` other than a client event."""
        ...


class Timer(Protocol):
    def cancel(self) -> None: ...


def loop_later(delay: float, callback: Callable[[], None]) -> Timer:
    """``callback`` in ``delay`` seconds on the running loop (the default :attr:`later`)."""
    return asyncio.get_running_loop().call_later(delay, callback)


class WebhookSource:
    """Follows channels and presence members of the apps with webhooks; sends their events."""

    def __init__(
        self,
        view: ClusterView,
        total: Callable[[str, str], int],
        clock: Callable[[], float] = time.monotonic,
        node_timeout: float = 10.0,
    ) -> None:
        self.view = view
        self._total = total  # subscriptions of a channel in the whole cluster
        self.clock = clock
        self._sink: Sink | None = None
        self.apps: dict[str, App] = {}  # the apps with webhooks, by id
        self._wants: dict[str, frozenset[str]] = {}  # app id -> the event types it wants
        # app id -> its webhooks for client_event when they all filter channels (see wanted),
        # () when one of them wants every channel; absent: none wants them (or no sink)
        self.client_hooks: dict[str, tuple[Webhook, ...]] = {}
        # (the node reads it through client_log when an app or the sink changes, and its
        # state of the app records client events itself: docs/webhooks.md)
        self._occupied: set[Key] = set()
        self._present: set[tuple[str, str, str]] = set()  # (app id, channel, user id)
        self._timers: dict[tuple[str, str, str, str], Timer] = {}
        self.later: Callable[[float, Callable[[], None]], Timer] = loop_later  # tests: a fake
        self._counts: set[Key] = set()  # subscription counts to send at the tick's end
        self._large: set[Key] = set()  # ... of large channels, at the next housekeeping
        self._recent: deque[tuple[float, App, WebhookEvent]] = deque(maxlen=RECENT)
        self._window = node_timeout + DELAY + 2.0  # how long a non-leader keeps an event
        self.quiet_until = clock() + QUIET  # the server clears it for a lone node
        self._leading = False
        self.sent = 0  # events handed to the sink
        self.deferred = 0  # events sent late, after this node became the leader

    @property
    def sink(self) -> Sink | None:
        """Where this node's webhook events go (None: webhooks are off on this node)."""
        return self._sink

    @sink.setter
    def sink(self, sink: Sink | None) -> None:
        self._sink = sink
        self.client_hooks.clear()
        for app in self.apps.values():
            self._follow_client_events(app)

    # the apps ---------------------------------------------------------------------------------
    def set_app(self, app_id: str, app: App | None) -> None:
        """The app store or the configuration says what ``app_id`` is now (None: gone)."""
        self.client_hooks.pop(app_id, None)
        if app is not None and app.enabled and app.webhooks:
            self.apps[app_id] = app
            self._wants[app_id] = frozenset(e for w in app.webhooks for e in w.event_types)
            self._follow_client_events(app)
            return
        self._wants.pop(app_id, None)
        if self.apps.pop(app_id, None) is not None:  # webhooks off: forget its picture
            self._occupied = {k for k in self._occupied if k[0] != app_id}
            self._present = {k for k in self._present if k[0] != app_id}
            for key in [k for k in self._timers if k[1] == app_id]:
                self._timers.pop(key).cancel()

    def client_log(self, app_id: str) -> tuple[list[str] | None, tuple[Webhook, ...] | None]:
        """Where the node records the client events of ``app_id`` (None: nowhere) and the
        channel filters of its client_event webhooks (None: every channel is wanted)."""
        hooks = self.client_hooks.get(app_id)
        if hooks is None or self._sink is None:
            return None, None
        return self._sink.log(app_id), hooks or None

    def _follow_client_events(self, app: App) -> None:
        hooks = tuple(w for w in app.webhooks if "client_event" in w.event_types)
        if hooks and self._sink is not None:
            filtered = all(w.channel_name_starts_with or w.channel_name_ends_with for w in hooks)
            self.client_hooks[app.id] = hooks if filtered else ()

    # what the node sees -------------------------------------------------------------------------
    def channel(self, app_id: str, channel: str) -> None:
        """The cluster-wide count of ``channel`` may have changed."""
        app = self.apps.get(app_id)
        if app is None:
            return
        key = (app_id, channel)
        total = self._total(app_id, channel)
        timer = ("vacate", app_id, channel, "")
        if total > 0:
            self._occupy(app, key)
        elif key in self._occupied and timer not in self._timers:
            self._later(timer, self._vacate, key)
        if _counted(app, channel):
            if total > LARGE_CHANNEL:
                self._large.add(key)
            else:
                if not self._counts:
                    soon(self._send_counts)
                self._counts.add(key)

    def _occupy(self, app: App, key: Key) -> None:
        """``key`` has a subscriber somewhere: ``channel_occupied`` unless it was said (a
        vacate pending within the delay is cancelled: nothing is sent)."""
        pending = self._timers.pop(("vacate", *key, ""), None)
        if pending is not None:
            pending.cancel()
        elif key not in self._occupied:
            self._occupied.add(key)
            self._send(app, WebhookEvent("channel_occupied", key[1]), quiet=True)

    def member(self, app_id: str, channel: str, user_id: str) -> None:
        """``user_id`` may have joined or left presence channel ``channel``, cluster-wide."""
        app = self.apps.get(app_id)
        if app is None:
            return
        roster = self.view.roster(app_id, channel)
        here = roster is not None and user_id in roster
        member = (app_id, channel, user_id)
        timer = ("remove", app_id, channel, user_id)
        if here:
            # a member occupies its channel: say so first, even when this node hears of the
            # member before the count (another node's join comes before its counts)
            self._occupy(app, (app_id, channel))
            pending = self._timers.pop(timer, None)
            if pending is not None:
                pending.cancel()  # back within the delay: nothing was sent
            elif member not in self._present:
                self._present.add(member)
                event = WebhookEvent("member_added", channel, user_id=user_id)
                self._send(app, event, quiet=True)
        elif member in self._present and timer not in self._timers:
            self._later(timer, self._remove, member)

    def cache_miss(self, app: App, channel: str) -> None:
        """A subscriber of cache channel ``channel`` found no cached event, on this node."""
        if "cache_miss" not in self._wants.get(app.id, ()) or self.sink is None:
            return
        if any(w.wants("cache_miss", channel) for w in app.webhooks):
            self.sink.event(app, WebhookEvent("cache_miss", channel))
            self.sent += 1

    def housekeeping(self) -> None:
        """Every few seconds: large channels' counts; a node that became the leader sends the
        events it held back; a node that is not forgets the old ones."""
        large, self._large = self._large, set()
        for app_id, channel in large:
            self._send_count(app_id, channel)
        leading = self._is_leader()
        now = self.clock()
        if leading and not self._leading:
            while self._recent:
                at, app, event = self._recent.popleft()
                if now - at <= self._window and self.sink is not None:
                    self.sink.event(app, event)
                    self.sent += 1
                    self.deferred += 1
        while self._recent and now - self._recent[0][0] > self._window:
            self._recent.popleft()
        self._leading = leading

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # internals --------------------------------------------------------------------------------
    def _is_leader(self) -> bool:
        return self.view.leader() == self.view.node_id

    def _send(self, app: App, event: WebhookEvent, quiet: bool = False) -> None:
        """Send ``event`` if this node is the leader (and not still learning the cluster);
        else keep it a while, in case the leader died without sending it."""
        if self.sink is None or not any(w.wants(event.name, event.channel) for w in app.webhooks):
            return
        now = self.clock()
        if quiet and now < self.quiet_until:
            return
        if self._is_leader():
            self.sink.event(app, event)
            self.sent += 1
        else:
            self._recent.append((now, app, event))

    def _later(
        self, timer: tuple[str, str, str, str], action: Callable[..., None], *args: object
    ) -> None:
        self._timers[timer] = self.later(DELAY, lambda: self._fire(timer, action, args))

    def _fire(
        self,
        timer: tuple[str, str, str, str],
        action: Callable[..., None],
        args: tuple[object, ...],
    ) -> None:
        self._timers.pop(timer, None)
        action(*args)

    def _vacate(self, key: Key) -> None:
        app = self.apps.get(key[0])
        if app is None or key not in self._occupied or self._total(*key) > 0:
            return
        if self.view.roster(*key):  # a member is still there (its count not heard yet)
            return
        self._occupied.discard(key)
        self._send(app, WebhookEvent("channel_vacated", key[1]))

    def _remove(self, member: tuple[str, str, str]) -> None:
        app_id, channel, user_id = member
        app = self.apps.get(app_id)
        roster = self.view.roster(app_id, channel)
        if app is None or member not in self._present or (roster and user_id in roster):
            return
        self._present.discard(member)
        self._send(app, WebhookEvent("member_removed", channel, user_id=user_id))

    def _send_counts(self) -> None:
        counts, self._counts = self._counts, set()
        for app_id, channel in counts:
            self._send_count(app_id, channel)

    def _send_count(self, app_id: str, channel: str) -> None:
        app = self.apps.get(app_id)
        if app is None:
            return
        count = self._total(app_id, channel)
        event = WebhookEvent("subscription_count", channel, subscription_count=count)
        self._send(app, event, quiet=True)


def wanted(hooks: tuple[Webhook, ...], channel: str) -> bool:
    """Whether one of an app's client_event ``hooks`` wants a client event on ``channel``."""
    return any(w.wants("client_event", channel) for w in hooks)


def _counted(app: App, channel: str) -> bool:
    """Whether ``subscription_count`` webhooks may concern ``channel`` (not presence)."""
    kind = channels.kind_of(channel)
    if kind.presence or kind.user:
        return False
    return any(w.wants("subscription_count", channel) for w in app.webhooks)
