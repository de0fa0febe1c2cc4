"""The control messages nodes send each other over the broker: one typed class per kind, and
the one table that maps each kind to its wire form (in the manner of centrifuge's control
protobuf and its marshal/unmarshal).

The wire form is a JSON object with short keys, as since the first release, so that nodes of two
releases understand each other during a rolling upgrade::

    {"t":"join","a":"1","c":"presence-room","i":"1.2","u":"alice","n":{"name":"A"},"s":7,"v":1}

``t`` is the kind, ``s`` the sender's sequence number, ``v`` the protocol version (:data:`VERSION`;
a message without ``v`` is version 1), the other keys the fields of the kind (:data:`KINDS`).

Version 2 adds the debug console's kinds and the nodes' stats (docs/cluster.md, "The debug
console"): ``watch`` (a viewer on the sender watches an app), ``debug`` (one debug entry of a
watched app, forwarded to the viewer's node), and an optional ``x`` (stats) in ``hb`` and
``state``. A lost debug entry must not make anyone ask for the sender's full state: it is a
best-effort stream, bounded and counted as dropped, and a resync for it would cost every node a
``state`` for nothing. Neither :data:`NEXT` nor :data:`UNCHECKED` gives that: both take a
number, so losing one shows as a gap at the sender's next ``join``. ``debug`` is therefore
numbered :data:`ASIDE`: it repeats the last number taken, as a heartbeat does, and no one checks
it or counts it. A release before version 2 would take it for a gap (it numbers an unknown kind
as :data:`NEXT`), so a node forwards debug entries only while every node it knows sends version
2 or later (:meth:`~ressonance.node.cluster.ClusterView.forwardable`); during a rolling upgrade
the console shows each node's own entries only. ``watch`` is rare (every ten seconds while a
viewer watches) and harmless to skip, so it takes the next number like ``join`` and goes to
every release; so does ``apps`` (an app of the app store changed: read the store now), which
an older release skips, reading the store on its own every second.

Versioning rules, so that a node can read messages of a newer release (docs/cluster.md,
"Control messages and rolling upgrades"):

- a kind this node does not know is ignored, but its sequence number still counts: a new kind
  must take the next number (:data:`NEXT`), so a receiver that skips it sees no gap;
- a key this node does not know is ignored (and extra items at the end of a member's
  ``[user id, user info]`` or a cached event's ``[event, data, ttl]``, though releases before
  version 1 refuse them in a cached event: add keys, not items);
- a missing optional key takes its default (the dataclass default);
- a newer ``v`` is read by these same rules: a release may add kinds, keys and optional fields,
  never change the type or the meaning of one (that needs a new kind or key);
- a malformed message (not JSON, not an object, no kind or sequence number, a key of the wrong
  type, a required key missing) is not applied: :func:`decode` never raises, it says why in
  :attr:`Envelope.error` and :class:`~ressonance.node.cluster.ClusterView` logs it at warning.

Encoding builds the wire dict directly and dumps it once (no ``dataclasses.asdict``, which deep
copies): ``join``, ``leave`` and ``counts`` go out for every subscription.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ressonance.protocol.presence import Member

VERSION = 2
FIRST_VERSION = 1  # of a message without ``v``

Key = tuple[str, str]  # (app id, channel)

# How a kind is numbered (the ``s`` key): the receiver's gap check follows it
NEXT = "next"  # takes the next number; a receiver that missed one asks for the sender's state
REPEAT = "repeat"  # repeats the last number taken (heartbeat): shows a gap after the last message
UNCHECKED = "unchecked"  # takes the next number, checked by no one: starts or ends a picture
ASIDE = "aside"  # repeats the last number, checked and counted by no one: loss is not a gap (v2)


class CacheEntry(NamedTuple):
    """A cache channel's last event as a ``state`` carries it: with its remaining time to live."""

    event: str
    data: str
    ttl: float


# the messages ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Join:
    """A socket of the sender joined a presence channel."""

    app_id: str
    channel: str
    socket_id: str
    user_id: str
    user_info: Any = None


@dataclass(frozen=True, slots=True)
class Leave:
    """A socket of the sender left a presence channel."""

    app_id: str
    channel: str
    socket_id: str


@dataclass(frozen=True, slots=True)
class Counts:
    """The sender's subscription counts of the channels that changed (0: none left)."""

    counts: dict[Key, int]


@dataclass(frozen=True, slots=True)
class Cache:
    """The last event of a cache channel, to keep for ``ttl`` seconds."""

    app_id: str
    channel: str
    event: str
    data: str
    ttl: float = 0


@dataclass(frozen=True, slots=True)
class Terminate:
    """Close the signed-in sockets of a user (HTTP ``terminate_connections``)."""

    app_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Seen:
    """Signed HTTP requests the sender served: (signature, window end), for the replay guard."""

    signatures: list[tuple[bytes, float]]


@dataclass(frozen=True, slots=True)
class Hello:
    """The sender (re)joins the cluster: everyone answers with its state."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Every second: the sender lives, with its connections per app and its stats (version 2:
    messages in and out, errors, cpu, rss, ... for the dashboard's nodes table)."""

    region: str = ""
    connections: dict[str, int] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Bye:
    """The sender stops: forget it now."""


@dataclass(frozen=True, slots=True)
class Sync:
    """Node ``to`` is asked for its full state."""

    to: str = ""


@dataclass(frozen=True, slots=True)
class State:
    """The sender's full picture: it replaces everything known of the sender."""

    region: str = ""
    connections: dict[str, int] = field(default_factory=dict)
    counts: dict[Key, int] = field(default_factory=dict)
    members: dict[Key, dict[str, Member]] = field(default_factory=dict)  # socket id → member
    cache: dict[Key, CacheEntry] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Watch:
    """A debug console viewer on the sender watches ``app_id``: forward its debug entries for
    ``ttl`` seconds (version 2; renewed every ten seconds while the viewer stays)."""

    app_id: str
    ttl: float


@dataclass(frozen=True, slots=True)
class Debug:
    """One debug entry of ``app_id`` on the sender, for a viewer on another node (version 2).
    ``at``: the sender's wall clock (Unix seconds); ``dropped``: the sender's entries of this
    app lost to its rate limit since the last one it forwarded."""

    app_id: str
    kind: str
    at: float
    channel: str | None = None
    socket_id: str | None = None
    event: str | None = None
    data: str | None = None
    code: int | None = None
    message: str | None = None
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Apps:
    """The sender changed ``app_id`` in the app store: read the store now (docs/apps.md, "How
    a change reaches every node"). A loss is harmless: every node reads the store's revision
    every second anyway."""

    app_id: str


Message = (
    Join
    | Leave
    | Counts
    | Cache
    | Terminate
    | Seen
    | Hello
    | Heartbeat
    | Bye
    | Sync
    | State
    | Watch
    | Debug
    | Apps
)


# field codecs: Python value → JSON value, and back (raising ValueError or TypeError) -------
def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _number(value: Any) -> float:
    if type(value) is not int and type(value) is not float:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return value


def _object(value: Any) -> dict[Any, Any]:
    if type(value) is not dict:
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, length: int) -> list[Any]:
    if type(value) is not list or len(value) < length:
        raise TypeError(f"expected a list of at least {length} items")
    return value


def _any(value: Any) -> Any:
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _stats_in(value: Any) -> dict[str, float]:
    """Stats by name; a value that is not a number is skipped (a newer release may add kinds
    of stats: they must not make the heartbeat malformed)."""
    stats: dict[str, float] = {}
    for name, n in _object(value).items():
        if type(n) in (int, float, bool):
            try:
                stats[name] = float(n)
            except OverflowError:  # an integer past a float's range
                continue
    return stats


def _connections_in(value: Any) -> dict[str, int]:
    return {app_id: _int(n) for app_id, n in _object(value).items()}


def _counts_out(counts: dict[Key, int]) -> dict[str, dict[str, int]]:
    by_app: dict[str, dict[str, int]] = {}
    for (app_id, channel), count in counts.items():
        by_app.setdefault(app_id, {})[channel] = count
    return by_app


def _counts_in(value: Any) -> dict[Key, int]:
    return {
        (app_id, channel): _int(n)
        for app_id, channels in _object(value).items()
        for channel, n in _object(channels).items()
    }


def _signatures_out(signatures: list[tuple[bytes, float]]) -> list[list[Any]]:
    return [[signature.hex(), expires] for signature, expires in signatures]


def _signatures_in(value: Any) -> list[tuple[bytes, float]]:
    if type(value) is not list:
        raise TypeError("expected a list")
    return [(bytes.fromhex(_str(s[0])), _number(s[1])) for s in map(_pair, value)]


def _pair(value: Any) -> list[Any]:
    return _list(value, 2)


def _members_out(
    members: dict[Key, dict[str, Member]],
) -> dict[str, dict[str, dict[str, list[Any]]]]:
    out: dict[str, dict[str, dict[str, list[Any]]]] = {}
    for (app_id, channel), sockets in members.items():
        out.setdefault(app_id, {})[channel] = {
            sid: [m.user_id, m.user_info] for sid, m in sockets.items()
        }
    return out


def _members_in(value: Any) -> dict[Key, dict[str, Member]]:
    return {
        (app_id, channel): {
            sid: Member(_str(m[0]), m[1]) for sid, m in map(_member, _object(sockets).items())
        }
        for app_id, channels in _object(value).items()
        for channel, sockets in _object(channels).items()
    }


def _member(item: tuple[str, Any]) -> tuple[str, list[Any]]:
    return item[0], _list(item[1], 2)


def _cache_out(cache: dict[Key, CacheEntry]) -> dict[str, list[Any]]:
    return {f"{a}\x1f{c}": [e.event, e.data, e.ttl] for (a, c), e in cache.items()}


def _cache_in(value: Any) -> dict[Key, CacheEntry]:
    out: dict[Key, CacheEntry] = {}
    for name, entry in _object(value).items():
        app_id, _, channel = name.partition("\x1f")
        event, data, ttl = _list(entry, 3)[:3]
        out[(app_id, channel)] = CacheEntry(_str(event), _str(data), _number(ttl))
    return out


class Codec(NamedTuple):
    out: Callable[[Any], Any] | None  # None: the value goes on the wire as it is
    into: Callable[[Any], Any]  # checks the wire value's type, raises ValueError or TypeError


STR = Codec(None, _str)
ANY = Codec(None, _any)
NUMBER = Codec(None, _number)
CONNECTIONS = Codec(None, _connections_in)
STATS = Codec(None, _stats_in)
INT = Codec(None, _int)
OPTIONAL_STR = Codec(None, _optional_str)
OPTIONAL_INT = Codec(None, _optional_int)
COUNTS = Codec(_counts_out, _counts_in)
SIGNATURES = Codec(_signatures_out, _signatures_in)
MEMBERS = Codec(_members_out, _members_in)
CACHE = Codec(_cache_out, _cache_in)


class Field(NamedTuple):
    name: str  # the dataclass field
    key: str  # its wire key
    codec: Codec
    required: bool = True  # else missing takes the dataclass default


class Kind(NamedTuple):
    tag: str  # the wire ``t``
    cls: type[Any]
    numbering: str  # NEXT, REPEAT or UNCHECKED
    fields: tuple[Field, ...]


_APP = Field("app_id", "a", STR)
_CHANNEL = Field("channel", "c", STR)
_SOCKET = Field("socket_id", "i", STR)
_REGION = Field("region", "r", STR, required=False)
_CONNECTIONS = Field("connections", "n", CONNECTIONS, required=False)
_STATS = Field("stats", "x", STATS, required=False)

# THE table: kind tag ↔ class ↔ numbering ↔ field ↔ wire key
KINDS: tuple[Kind, ...] = (
    Kind(
        "join",
        Join,
        NEXT,
        (
            _APP,
            _CHANNEL,
            _SOCKET,
            Field("user_id", "u", STR),
            Field("user_info", "n", ANY, required=False),
        ),
    ),
    Kind("leave", Leave, NEXT, (_APP, _CHANNEL, _SOCKET)),
    Kind("counts", Counts, NEXT, (Field("counts", "c", COUNTS),)),
    Kind(
        "cache",
        Cache,
        NEXT,
        (
            _APP,
            _CHANNEL,
            Field("event", "e", STR),
            Field("data", "d", STR),
            Field("ttl", "ttl", NUMBER, required=False),
        ),
    ),
    Kind("term", Terminate, NEXT, (_APP, Field("user_id", "u", STR))),
    Kind("seen", Seen, NEXT, (Field("signatures", "g", SIGNATURES),)),
    Kind("hello", Hello, UNCHECKED, ()),
    Kind("hb", Heartbeat, REPEAT, (_REGION, _CONNECTIONS, _STATS)),
    Kind("bye", Bye, UNCHECKED, ()),
    Kind("sync", Sync, NEXT, (Field("to", "to", STR, required=False),)),
    Kind(
        "state",
        State,
        UNCHECKED,
        (
            _REGION,
            _CONNECTIONS,
            Field("counts", "c", COUNTS, required=False),
            Field("members", "m", MEMBERS, required=False),
            Field("cache", "k", CACHE, required=False),
            _STATS,
        ),
    ),
    Kind("watch", Watch, NEXT, (_APP, Field("ttl", "ttl", NUMBER))),
    Kind("apps", Apps, NEXT, (_APP,)),
    Kind(
        "debug",
        Debug,
        ASIDE,
        (
            _APP,
            Field("kind", "k", STR),
            Field("at", "w", NUMBER),
            Field("channel", "c", OPTIONAL_STR, required=False),
            Field("socket_id", "i", OPTIONAL_STR, required=False),
            Field("event", "e", OPTIONAL_STR, required=False),
            Field("data", "d", OPTIONAL_STR, required=False),
            Field("code", "o", OPTIONAL_INT, required=False),
            Field("message", "m", OPTIONAL_STR, required=False),
            Field("dropped", "x", INT, required=False),
        ),
    ),
)


def _check(kind: Kind) -> None:
    """The table and the dataclasses agree: same fields, required exactly when no default."""
    fields = dataclasses.fields(kind.cls)
    keys = [spec.key for spec in kind.fields]
    agree = [f.name for f in fields] == [spec.name for spec in kind.fields] and all(
        spec.required
        is (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f, spec in zip(fields, kind.fields, strict=True)
    )
    if not agree or len(set(keys)) != len(keys) or {"t", "s", "v"} & set(keys):
        raise TypeError(f"control message {kind.tag!r}: the table and {kind.cls.__name__} differ")


for _kind in KINDS:
    _check(_kind)

_BY_TAG = {kind.tag: kind for kind in KINDS}
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# per class: its tag and ((field name, wire key, encoder or None), ...)
_OUT = {
    kind.cls: (kind.tag, tuple((f.name, f.key, f.codec.out) for f in kind.fields)) for kind in KINDS
}
# per tag: its class and ((wire key, field name, decoder, required), ...)
_IN = {
    kind.tag: (kind.cls, tuple((f.key, f.name, f.codec.into, f.required) for f in kind.fields))
    for kind in KINDS
}


def encode(message: Message, seq: int) -> str:
    """``message`` as the sender's ``seq``-th control message, in the wire form: the wire dict
    built directly and dumped once."""
    tag, fields = _OUT[type(message)]
    wire: dict[str, Any] = {"t": tag}
    for name, key, out in fields:
        value = getattr(message, name)
        wire[key] = value if out is None else out(value)
    wire["s"] = seq
    wire["v"] = VERSION
    return _dumps(wire)


class Envelope(NamedTuple):
    """A decoded control message: ``message`` is None for a kind this node does not know
    (``error`` empty: ignore it) and for a malformed one (``error`` says why)."""

    seq: int  # -1: unreadable (not JSON, not an object, no kind or sequence number)
    kind: str  # the wire tag, known or not ("" when unreadable)
    message: Message | None
    error: str = ""
    version: int = FIRST_VERSION


def numbering(kind: str) -> str:
    """How messages of ``kind`` are numbered: :data:`NEXT` for a kind this node does not know
    (the rule for new kinds)."""
    known = _BY_TAG.get(kind)
    return known.numbering if known is not None else NEXT


def decode(payload: str | bytes) -> Envelope:
    """The control message in ``payload``; never raises (a malformed one has ``error``)."""
    try:
        wire = json.loads(payload)
    except (ValueError, TypeError, RecursionError) as exc:
        return Envelope(-1, "", None, f"not JSON ({type(exc).__name__})")
    if type(wire) is not dict:
        return Envelope(-1, "", None, "not a JSON object")
    tag = wire.get("t")
    seq = wire.get("s")
    if type(tag) is not str or type(seq) is not int or seq < 0:
        return Envelope(-1, "", None, "no kind ('t') or sequence number ('s')")
    version = wire.get("v", FIRST_VERSION)
    if type(version) is not int or version < 1:
        return Envelope(seq, tag, None, "'v': expected a positive integer")
    known = _IN.get(tag)
    if known is None:
        return Envelope(seq, tag, None, "", version)  # a newer kind: ignored
    cls, fields = known
    values: dict[str, Any] = {}
    for key, name, into, required in fields:
        if key in wire:
            try:
                values[name] = into(wire[key])
            except (ValueError, TypeError) as exc:
                return Envelope(seq, tag, None, f"{key!r}: {exc}", version)
        elif required:
            return Envelope(seq, tag, None, f"{key!r} is missing", version)
    return Envelope(seq, tag, cls(**values), "", version)
