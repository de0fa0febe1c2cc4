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
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from ressonance.scaling.base import BrokerHandler

log = logging.getLogger("ressonance.scaling")

SEP = "\x1f"
PUBLICATION = "P"
CONTROL = "C"
FRAGMENT = "F"
# 200,000 characters are at most 800,000 bytes of UTF-8: under NATS's default max_payload
FRAGMENT_CHARS = 200_000
MAX_FRAGMENTS = 320  # a frame of up to 64 M characters; longer ones are refused
MAX_QUEUED_CHARS = 256 * 2**20  # what an outbox holds while the engine is away, at most


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


def dispatch(frame: str, own: str, handler: BrokerHandler) -> None:
    """Hand one received frame to ``handler``, unless this node (``own``) sent it. Never raises:
    an unreadable frame or a failing handler is logged, so the reader keeps going."""
    try:
        kind = frame[:1]
        if kind == PUBLICATION:
            origin, app_id, channel, exclude, message = frame[1:].split(SEP, 4)
            if origin != own:
                handler.deliver(app_id, channel, message, exclude or None)
        elif kind == CONTROL:
            origin, payload = frame[1:].split(SEP, 1)
            if origin != own:
                handler.control(origin, payload)
        else:
            log.warning("broker: skipped a frame of unknown kind %r", kind)
    except ValueError:
        log.warning("broker: skipped a malformed frame (%d chars)", len(frame))
    except Exception:
        log.exception("broker: the handler failed on a frame")


class Outbox:
    """Encoded frames waiting to go out, in order. Bounded in frames and in characters: when
    full, the oldest frames are dropped and counted in :attr:`dropped`. :attr:`ready` is set
    while frames are waiting."""

    def __init__(self, capacity: int, max_chars: int = MAX_QUEUED_CHARS) -> None:
        self.frames: deque[str] = deque()
        self.capacity = capacity
        self.max_chars = max_chars
        self.chars = 0  # the size of what is queued: frames can be large
        self.dropped = 0
        self.in_flight = 0
        self.ready = asyncio.Event()

    def put(self, frame: str) -> None:
        frames = self.frames
        self.chars += len(frame)
        frames.append(frame)
        while len(frames) > self.capacity or (self.chars > self.max_chars and len(frames) > 1):
            self.chars -= len(frames.popleft())
            self.dropped += 1
        self.ready.set()

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
        self.dropped += lost
        self.in_flight = 0

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
    report the link, dispatch received frames. Subclasses add ``start`` and ``close``."""

    def __init__(self, url: str, node_id: str, capacity: int) -> None:
        self.url = url
        self.where = redact(url)  # for logs
        self.node_id = node_id
        self.outbox = Outbox(capacity)
        self.handler: BrokerHandler | None = None
        self.up = False
        self._fragments = Reassembler()
        self._next_id = 0
        self.fragment_chars = FRAGMENT_CHARS  # NATS lowers it to what its server accepts

    @property
    def connected(self) -> bool:
        return self.up

    @property
    def dropped(self) -> int:
        """Frames given up: the oldest when the outbox was full, or ones lost with a write."""
        return self.outbox.dropped

    def publish(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        self._put(encode_publication(self.node_id, app_id, channel, message, exclude))

    def send(self, payload: str) -> None:
        self._put(encode_control(self.node_id, payload))

    def _put(self, frame: str) -> None:
        if not frame.isascii():  # O(1) in CPython; only non-ASCII frames pay for the check
            try:
                frame.encode()
            except UnicodeEncodeError:  # a lone surrogate: the engine's write would fail
                log.error("broker: dropped a frame that has no UTF-8 form")
                self.outbox.dropped += 1
                return
        size = self.fragment_chars
        if len(frame) <= size:
            self.outbox.put(frame)
            return
        if len(frame) > size * MAX_FRAGMENTS:
            log.error("broker: a frame of %d characters is too large to send", len(frame))
            self.outbox.dropped += 1
            return
        self._next_id += 1
        for piece in fragment(self.node_id, self._next_id, frame, size):
            self.outbox.put(piece)

    def received(self, frame: str) -> None:
        if self.handler is None:
            return
        if frame[:1] == FRAGMENT:
            if frame.startswith(self.node_id + SEP, 1):
                return  # this node's own, back from the engine
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
        dispatch(frame, self.node_id, self.handler)

    def link_changed(self, up: bool) -> None:
        """Record the link state and tell the handler, once per change."""
        if up == self.up:
            return
        self.up = up
        if not up:
            self._fragments.forget()
        if self.handler is not None:
            try:
                self.handler.link_changed(up)
            except Exception:
                log.exception("broker: link_changed(%s) failed", up)
