"""What the networked brokers (Redis, NATS) share: the text wire format and the bounded outbox.

One bus (a Redis channel, a NATS subject) carries both kinds of traffic as one text frame each,
fields separated by ``\\x1f`` (ASCII unit separator), the free-form text always last::

    P<origin>\\x1f<app_id>\\x1f<channel>\\x1f<exclude>\\x1f<message>    a publication
    C<origin>\\x1f<payload>                                        a control message

``exclude`` is empty for "nobody" (a socket id is never empty). Node ids, app ids and channel
names never contain ``\\x1f``; messages and payloads may, since they are split off last. A
receiver drops frames whose origin is its own node, and logs and skips frames it cannot read.

A frame longer than :data:`FRAGMENT_CHARS` (a node's full ``state`` with thousands of presence
members, say) goes out as fragments, since NATS refuses messages over its ``max_payload``
(1 MiB by default)::

    F<origin>\\x1f<id>\\x1f<index>\\x1f<count>\\x1f<piece>             one piece of a frame

Frames from one node arrive in order, so the receiver joins the pieces of each origin as they
come; a missing piece (at most once delivery) discards that frame, and the node's sequence
numbers then ask for its state again (:mod:`ressonance.node.cluster`).

**Liveness.** The engine hands every node its own frames back too (a Redis subscriber gets all
of its channel, NATS echoes by default); they are not dispatched, but they prove the link works
end to end: written, relayed, read. :meth:`WireBroker.watch` gives the link up (raises
:class:`LinkFailure`) when a frame this node wrote has not come back within
:data:`LINK_TIMEOUT` while nothing else came either, or within :data:`BEHIND_LIMIT` at all; the
engine module then opens a new link. A node writes at least its heartbeat every second; with
nothing written for :data:`PROBE_AFTER`, the watchdog writes a *probe*, a publication for no
app (empty app id), which receivers skip::

    P<origin>\x1f\x1f\x1f\x1f                                      a probe

A check that runs late by more than :data:`STALL` means this process did not run (stopped with
SIGSTOP, starved, swapped out): what the engine kept for it meanwhile is still to be read, so
the time counts from then on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from ressonance.faultlog import FaultLog
from ressonance.scaling.base import BrokerHandler

log = logging.getLogger("ressonance.scaling")
faults = FaultLog(log)  # a frame that makes the handler fail may come once per publish

SEP = "\x1f"
PUBLICATION = "P"
CONTROL = "C"
FRAGMENT = "F"
# 200,000 characters are at most 800,000 bytes of UTF-8: under NATS's default max_payload
FRAGMENT_CHARS = 200_000
MAX_FRAGMENTS = 320  # a frame of up to 64 M characters; longer ones are refused
MAX_QUEUED_CHARS = 256 * 2**20  # what an outbox holds while the engine is away, at most
LINK_TIMEOUT = 2.0  # a frame written must come back within this long while nothing else comes
BEHIND_LIMIT = 10.0  # ... or within this long, even while other nodes' frames keep coming
PROBE_AFTER = 1.0  # nothing written for this long: write a probe
CHECK_EVERY = 0.25  # the watchdog's period
STALL = 1.0  # the watchdog woke this much later than asked: this process did not run
REPORT_EVERY = 5.0  # dropped frames are logged at most this often, with their count


class LinkFailure(Exception):
    """The link stopped delivering (:meth:`WireBroker.watch`): give it up and open a new one."""


def redact(url: str) -> str:
    """``url`` without its user and password, for logs."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def encode_publication(
    origin: str, app_id: str, channel: str, message: str, exclude: str | None
) -> str:
    return f"{PUBLICATION}{origin}{SEP}{app_id}{SEP}{channel}{SEP}{exclude or ''}{SEP}{message}"


def encode_control(origin: str, payload: str) -> str:
    return f"{CONTROL}{origin}{SEP}{payload}"


def encode_probe(origin: str) -> str:
    """A publication for no app: it only has to come back to ``origin`` (module doc)."""
    return encode_publication(origin, "", "", "", None)


def fragment(origin: str, frame_id: int, frame: str, size: int = FRAGMENT_CHARS) -> list[str]:
    """``frame`` as fragments of at most ``size`` characters of it each."""
    count = -(-len(frame) // size)
    return [
        f"{FRAGMENT}{origin}{SEP}{frame_id}{SEP}{index}{SEP}{count}{SEP}"
        + frame[index * size : (index + 1) * size]
        for index in range(count)
    ]


class Reassembler:
    """Joins the fragments of each origin back into frames (they arrive in order per origin)."""

    def __init__(self) -> None:
        self._partial: dict[str, tuple[str, list[str]]] = {}  # origin → (frame id, pieces)

    def add(self, frame: str) -> str | None:
        """Take a fragment frame; return the whole frame once its last piece came."""
        origin, frame_id, index, count, piece = frame[1:].split(SEP, 4)
        n, total = int(index), int(count)
        if not 0 < total <= MAX_FRAGMENTS:
            raise ValueError(f"{total} fragments")
        partial = self._partial.get(origin)
        if n == 0:
            if partial is not None:
                log.warning("broker: dropped an incomplete frame from %s", origin)
            partial = self._partial[origin] = (frame_id, [])
        elif partial is None or partial[0] != frame_id or len(partial[1]) != n:
            self._partial.pop(origin, None)
            log.warning("broker: dropped an incomplete frame from %s (a piece was lost)", origin)
            return None
        pieces = partial[1]
        pieces.append(piece)
        if len(pieces) < total:
            return None
        del self._partial[origin]
        return "".join(pieces)

    def interrupted(self, frame: str) -> None:
        """A whole frame came: a partial one from the same origin will never be completed
        (a node's fragments go out back to back)."""
        if self._partial:
            origin = frame[1:].split(SEP, 1)[0]
            if self._partial.pop(origin, None) is not None:
                log.warning("broker: dropped an incomplete frame from %s", origin)

    def forget(self) -> None:
        """The link went down: pieces still missing will not come."""
        self._partial.clear()


def dispatch(frame: str, handler: BrokerHandler) -> None:
    """Hand one received frame of another node to ``handler`` (a probe to nobody). Never
    raises: an unreadable frame or a failing handler is logged, so the reader keeps going."""
    try:
        kind = frame[:1]
        if kind == PUBLICATION:
            _, app_id, channel, exclude, message = frame[1:].split(SEP, 4)
            if app_id:
                handler.deliver(app_id, channel, message, exclude or None)
        elif kind == CONTROL:
            origin, payload = frame[1:].split(SEP, 1)
            handler.control(origin, payload)
        else:
            log.warning("broker: skipped a frame of unknown kind %r", kind)
    except ValueError:
        log.warning("broker: skipped a malformed frame (%d chars)", len(frame))
    except Exception:
        faults.exception("broker: the handler failed on a frame")


class DropLog:
    """Frames given up, logged: a warning at the first, then at most every
    :data:`REPORT_EVERY` seconds with the count since the last one (a full outbox drops a frame
    per frame sent, which must neither go unseen nor flood the log)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.unlogged = 0
        self.total = 0
        self._why = ""
        self._next = 0.0

    def add(self, count: int, why: str) -> None:
        self.unlogged += count
        self.total += count
        self._why = why
        self.report(time.monotonic())

    def report(self, now: float, due: bool = False) -> None:
        """Log what is not logged yet if the time has come (or ``due``)."""
        if self.unlogged and (due or now >= self._next):
            log.warning(
                "broker %s: %d frame(s) for the other nodes dropped: %s (%d in all)",
                self.where,
                self.unlogged,
                self._why,
                self.total,
            )
            self.unlogged = 0
            self._next = now + REPORT_EVERY


class Outbox:
    """Encoded frames waiting to go out, in order. Bounded in frames and in characters: when
    full, the oldest frames are dropped, counted in :attr:`dropped` and told to ``on_drop``.
    :attr:`ready` is set while frames are waiting."""

    def __init__(
        self,
        capacity: int,
        max_chars: int = MAX_QUEUED_CHARS,
        on_drop: Callable[[int, str], None] | None = None,
    ) -> None:
        self.frames: deque[str] = deque()
        self.capacity = capacity
        self.max_chars = max_chars
        self.chars = 0  # the size of what is queued: frames can be large
        self.dropped = 0
        self.in_flight = 0
        self.ready = asyncio.Event()
        self._on_drop = on_drop

    def put(self, frame: str) -> None:
        frames = self.frames
        self.chars += len(frame)
        frames.append(frame)
        if len(frames) > self.capacity or self.chars > self.max_chars:
            self._shed()
        self.ready.set()

    def _shed(self) -> None:
        frames, dropped = self.frames, 0
        while len(frames) > self.capacity or (self.chars > self.max_chars and len(frames) > 1):
            self.chars -= len(frames.popleft())
            dropped += 1
        if dropped:
            limits = f"{self.capacity:,} frames or {self.max_chars:,} characters"
            self.drop(dropped, f"the outbox is full, {limits} at most")

    def drop(self, count: int, why: str) -> None:
        """Count ``count`` frames given up (and tell ``on_drop``)."""
        self.dropped += count
        if self._on_drop is not None:
            self._on_drop(count, why)

    @property
    def full(self) -> bool:
        """Another frame would push the oldest out."""
        return len(self.frames) >= self.capacity or self.chars >= self.max_chars

    def take(self, most: int) -> list[str]:
        """Up to ``most`` frames, oldest first; the caller reports how many it lost with
        :meth:`done`."""
        batch = [self.frames.popleft() for _ in range(min(most, len(self.frames)))]
        self.chars -= sum(map(len, batch))
        if not self.frames:
            self.ready.clear()
        self.in_flight = len(batch)
        return batch

    def done(self, lost: int) -> None:
        """The batch from :meth:`take` went out, but for ``lost`` frames (a failed write)."""
        self.in_flight = 0
        if lost:
            self.drop(lost, "lost with a failed write")

    @property
    def empty(self) -> bool:
        return not self.frames and not self.in_flight

    async def drained(self, timeout: float, linked: Callable[[], bool]) -> None:
        """Wait (at most ``timeout`` seconds) until everything went out; give up early when
        the link is down (``linked()`` false), since nothing could go out then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.empty and linked() and loop.time() < deadline:
            await asyncio.sleep(0.01)


class WireBroker:
    """What a networked broker does the same whatever the engine: encode into the outbox,
    report the link, dispatch received frames, watch the link (module doc). Subclasses add
    ``start`` and ``close``, call :meth:`wrote` before each write, and run :meth:`watch`."""

    def __init__(self, url: str, node_id: str, capacity: int) -> None:
        self.url = url
        self.where = redact(url)  # for logs
        self.node_id = node_id
        self.drops = DropLog(self.where)
        self.outbox = Outbox(capacity, on_drop=self.drops.add)
        self.handler: BrokerHandler | None = None
        self.up = False
        self.link_losses = 0  # the link went down (counted for metrics) ...
        self.reconnects = 0  # ... and came back
        self._fragments = Reassembler()
        self._next_id = 0
        self.fragment_chars = FRAGMENT_CHARS  # NATS lowers it to what its server accepts
        self._own = node_id + SEP  # what follows the kind in this node's frames
        self._probe = encode_probe(node_id)
        self._frames_in = 0
        self._written_at = 0.0
        self._unechoed_since: float | None = None  # the first write not seen back yet

    @property
    def connected(self) -> bool:
        return self.up

    @property
    def dropped(self) -> int:
        """Frames given up: the oldest when the outbox was full, or ones lost with a write."""
        return self.outbox.dropped

    @property
    def full(self) -> bool:
        return self.outbox.full

    def publish(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        self._put(encode_publication(self.node_id, app_id, channel, message, exclude))

    def send(self, payload: str) -> None:
        self._put(encode_control(self.node_id, payload))

    def _put(self, frame: str) -> None:
        if not frame.isascii():  # O(1) in CPython; only non-ASCII frames pay for the check
            try:
                frame.encode()
            except UnicodeEncodeError:  # a lone surrogate: the engine's write would fail
                self.outbox.drop(1, "a frame has no UTF-8 form")
                return
        size = self.fragment_chars
        if len(frame) <= size:
            self.outbox.put(frame)
            return
        if len(frame) > size * MAX_FRAGMENTS:
            self.outbox.drop(1, f"a frame of {len(frame)} characters is too large to send")
            return
        self._next_id += 1
        for piece in fragment(self.node_id, self._next_id, frame, size):
            self.outbox.put(piece)

    def wrote(self) -> None:
        """The engine module is about to write frames: they must come back (module doc)."""
        self._written_at = now = time.monotonic()
        if self._unechoed_since is None:
            self._unechoed_since = now

    def received(self, frame: str) -> None:
        self._frames_in += 1
        if frame.startswith(self._own, 1):  # this node's own, back from the engine
            self._unechoed_since = None
            return
        if self.handler is None:
            return
        if frame[:1] == FRAGMENT:
            try:
                whole = self._fragments.add(frame)
            except ValueError:
                log.warning("broker: skipped a malformed fragment (%d chars)", len(frame))
                return
            if whole is None:
                return
            frame = whole
        else:
            self._fragments.interrupted(frame)
        dispatch(frame, self.handler)

    async def watch(self) -> None:
        """Check the link every :data:`CHECK_EVERY` seconds, log dropped frames when due, and
        write a probe when nothing was written for :data:`PROBE_AFTER`; raise
        :class:`LinkFailure` when the link stopped delivering (module doc). Call it while the
        link is up; it does not return."""
        self._unechoed_since = None
        seen = self._frames_in
        checked = heard = time.monotonic()
        while True:
            await asyncio.sleep(CHECK_EVERY)
            now = time.monotonic()
            if now - checked > CHECK_EVERY + STALL:  # this process did not run (module doc)
                heard = now
                if self._unechoed_since is not None:
                    self._unechoed_since = now
            checked = now
            if self._frames_in != seen:
                seen, heard = self._frames_in, now
            self.drops.report(now)
            since = self._unechoed_since
            if since is not None and now - since > LINK_TIMEOUT:
                if now - heard > LINK_TIMEOUT:
                    raise LinkFailure(f"nothing came back for {now - heard:.1f} s")
                if now - since > BEHIND_LIMIT:
                    raise LinkFailure(f"its own frames not back for {now - since:.1f} s")
            if self.up and self.outbox.empty and now - self._written_at > PROBE_AFTER:
                self.outbox.put(self._probe)

    def link_changed(self, up: bool) -> None:
        """Record the link state, count and tell the handler, once per change."""
        if up == self.up:
            return
        self.up = up
        if up:
            if self.link_losses:
                self.reconnects += 1
            self.drops.report(time.monotonic(), due=True)
        else:
            self.link_losses += 1
            self._fragments.forget()
        if self.handler is not None:
            try:
                self.handler.link_changed(up)
            except Exception:
                log.exception("broker: link_changed(%s) failed", up)
