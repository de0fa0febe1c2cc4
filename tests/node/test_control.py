"""The control messages' schema (node/control.py): every kind round-trips, the wire form is the
previous release's (plus ``"v"`` and version 2's optional keys) so both releases run side by
side in a rolling upgrade, and what a newer release or a broken sender might send is ignored
the documented way."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ressonance.node import control
from ressonance.node.cluster import (
    CachedEvent,
    ClusterView,
    CountChanged,
    DebugEntry,
    DebugWatch,
    MemberAdded,
    MemberRemoved,
    Seen,
    SendState,
)
from ressonance.protocol.presence import Member

ALICE = Member("alice", {"name": "Älice"})

SAMPLES: list[control.Message] = [
    control.Join("1", "presence-room", "1.2", "alice", {"name": "Älice"}),
    control.Join("1", "presence-room", "1.3", "bob"),
    control.Leave("1", "presence-room", "1.2"),
    control.Counts({("1", "a"): 2, ("1", "b"): 0, ("2", "a"): 1}),
    control.Cache("1", "cache-x", "tick", '{"p":1}', 30),
    control.Terminate("1", "u7"),
    control.Seen([(bytes.fromhex("ab12"), 12.5)]),
    control.Hello(),
    control.Heartbeat("eu", {"1": 3}),
    control.Heartbeat(),
    control.Heartbeat("eu", {"1": 3}, {"cpu": 12.5, "rss": 1e8, "draining": 0.0}),
    control.Bye(),
    control.Sync("n2"),
    control.State(
        "eu",
        {"1": 3},
        {("1", "a"): 2},
        {("1", "presence-room"): {"1.2": ALICE, "1.4": Member("bob", None)}},
        {("1", "cache-x"): control.CacheEntry("tick", '{"p":1}', 29.0)},
    ),
    control.State(),
    control.State(stats={"uptime": 3.0}),
    control.Watch("1", 30.0),
    control.Apps("1"),
    control.Debug("1", "api_message", 1.7e9, "news", None, "e", '{"p":1}', dropped=3),
    control.Debug("1", "error", 1.7e9, None, "1.2", None, None, 4009, "Connection is unauthorized"),
    control.Debug("1", "connection", 1.7e9),
]

# What the previous release's ClusterView wrote for these calls (captured from it), in order:
# join("1", "presence-r", "1.2", Member("alice", {"name": "Ä"})), join(... "1.3", bob, None),
# leave(... "1.3"), counts(...), remember("1", "cache-x", ..., 30), terminate("1", "u7"),
# seen([("ab12", 12.5)]), heartbeat({"1": 3}), hello(...) → hello + state, sync, bye
PREVIOUS_RELEASE = [
    '{"t":"join","a":"1","c":"presence-r","i":"1.2","u":"alice","n":{"name":"Ä"},"s":1}',
    '{"t":"join","a":"1","c":"presence-r","i":"1.3","u":"bob","n":null,"s":2}',
    '{"t":"leave","a":"1","c":"presence-r","i":"1.3","s":3}',
    '{"t":"counts","c":{"1":{"a":2,"b":0},"2":{"a":1}},"s":4}',
    '{"t":"cache","a":"1","c":"cache-x","e":"e","d":"{\\"p\\":1}","ttl":30,"s":5}',
    '{"t":"term","a":"1","u":"u7","s":6}',
    '{"t":"seen","g":[["ab12",12.5]],"s":7}',
    '{"t":"hb","s":7,"r":"eu","n":{"1":3}}',
    '{"t":"hello","s":8}',
    '{"t":"state","r":"eu","n":{"1":3},"c":{"1":{"a":2}},'
    '"m":{"1":{"presence-r":{"1.2":["alice",{"name":"Ä"}]}}},'
    '"k":{"1\\u001fcache-x":["e","{\\"p\\":1}",29.0]},"s":9}',
    '{"t":"sync","to":"n2","s":10}',
    '{"t":"bye","s":11}',
]


def drive(view: ClusterView) -> list[str]:
    """The calls that made PREVIOUS_RELEASE, on this release's view."""
    view.join("1", "presence-r", "1.2", Member("alice", {"name": "Ä"}))
    view.join("1", "presence-r", "1.3", Member("bob", None))
    view.leave("1", "presence-r", "1.3")
    view.counts({("1", "a"): 2, ("1", "b"): 0, ("2", "a"): 1})
    view.remember("1", "cache-x", CachedEvent("e", '{"p":1}', 30.0), 30)
    view.terminate("1", "u7")
    view.seen([("ab12", 12.5)])
    view.heartbeat({"1": 3})
    view.hello({"1": 3}, {("1", "a"): 2}, 1.0)
    view.receive("n2", '{"t":"join","a":"1","c":"p","i":"9","u":"z","s":5}', 2.0)  # → sync
    view.bye()
    return view.messages_to_send()


def test_every_kind_round_trips() -> None:
    assert {type(m) for m in SAMPLES} == {kind.cls for kind in control.KINDS}
    for message in SAMPLES:
        seq, kind, decoded, error, version = control.decode(control.encode(message, 7))
        assert (seq, decoded, error, version) == (7, message, "", control.VERSION)
        assert kind == next(k.tag for k in control.KINDS if k.cls is type(message))


def test_the_wire_form_is_the_previous_releases_plus_the_version() -> None:
    sent = drive(ClusterView("n1", "eu", 0.0))
    assert len(sent) == len(PREVIOUS_RELEASE)
    for new, old in zip(sent, PREVIOUS_RELEASE, strict=True):
        added = {"x": {}} if json.loads(old)["t"] in ("hb", "state") else {}  # stats (v2)
        assert json.loads(new) == {**json.loads(old), **added, "v": control.VERSION}
        if not added:
            assert new == old[:-1] + f',"v":{control.VERSION}}}'
    join, hb, state = control.decode(sent[0]), control.decode(sent[7]), control.decode(sent[9])
    assert join.message == control.Join("1", "presence-r", "1.2", "alice", {"name": "Ä"})
    assert hb.message == control.Heartbeat("eu", {"1": 3})
    assert isinstance(state.message, control.State)
    assert state.message.cache == {("1", "cache-x"): ("e", '{"p":1}', 29.0)}


def test_the_previous_releases_messages_are_read_as_version_1() -> None:
    for payload in PREVIOUS_RELEASE:
        envelope = control.decode(payload)
        assert envelope.message is not None and envelope.error == ""
        assert envelope.version == 1
        assert json.loads(control.encode(envelope.message, envelope.seq)) == {
            **json.loads(payload),
            **({"x": {}} if envelope.kind in ("hb", "state") else {}),
            "v": control.VERSION,
        }


def test_messages_to_send_returns_and_empties_the_outbox() -> None:
    view = ClusterView("n1")
    view.terminate("1", "u")
    view.bye()
    sent = view.messages_to_send()
    assert [json.loads(p)["t"] for p in sent] == ["term", "bye"]
    assert view.outbox == [] and view.messages_to_send() == []


# what a newer release sends -------------------------------------------------------------------
def synced_view() -> ClusterView:
    """n1, which has n2's hello (1) and state (2)."""
    view = ClusterView("n1")
    view.receive("n2", '{"t":"hello","s":1}', 0.0)
    view.receive("n2", '{"t":"state","s":2}', 0.0)
    view.messages_to_send()
    return view


def join(seq: int, socket_id: str, **extra: Any) -> str:
    fields = {"t": "join", "a": "1", "c": "presence-r", "i": socket_id, "u": socket_id}
    return json.dumps({**fields, "s": seq, **extra})


def sent(view: ClusterView) -> list[str]:
    return [json.loads(p)["t"] for p in view.messages_to_send()]


def test_an_unknown_kind_is_ignored_but_its_number_counts() -> None:
    view = synced_view()
    assert view.receive("n2", join(3, "a"), 1.0) != []
    assert view.receive("n2", '{"t":"migrate","s":4,"to":"n9","x":[1]}', 1.0) == []
    assert view.receive("n2", '{"t":"hb","s":4,"r":"","n":{}}', 1.0) == []
    assert view.receive("n2", join(5, "b"), 1.0) != []
    assert sent(view) == []  # no gap seen
    # the same with the unknown kind lost: 4 is missing, n1 asks for n2's state
    view = synced_view()
    view.receive("n2", join(3, "a"), 1.0)
    view.receive("n2", join(5, "b"), 1.0)
    assert sent(view) == ["sync"]


def test_unknown_keys_are_ignored_and_a_newer_version_is_read() -> None:
    view = synced_view()
    effects = view.receive("n2", join(3, "a", v=2, z={"new": True}, p=[1, 2]), 1.0)
    assert effects == [MemberAdded("1", "presence-r", Member("a", None))]
    assert view.peers["n2"].version == 2
    state = {
        "t": "state",
        "s": 4,
        "v": 3,
        "m": {"1": {"presence-r": {"a": ["a", None, "extra"], "b": ["b", 1]}}},
        "k": {"1\x1fcache-x": ["e", "d", 30, "extra"]},
        "q": "new",
    }
    effects = view.receive("n2", json.dumps(state), 2.0)
    assert effects == [MemberAdded("1", "presence-r", Member("b", 1))]
    assert view.cached("1", "cache-x", 2.0) == CachedEvent("e", "d", 32.0)
    assert sent(view) == []


def test_a_missing_optional_key_takes_its_default() -> None:
    assert control.decode('{"t":"hb","s":1}').message == control.Heartbeat("", {})
    assert control.decode('{"t":"cache","s":1,"a":"1","c":"x","e":"e","d":"d"}').message == (
        control.Cache("1", "x", "e", "d", 0)
    )
    assert control.decode('{"t":"sync","s":1}').message == control.Sync("")
    view = ClusterView("n1")
    assert view.receive("n2", '{"t":"state","s":1}', 0.0) == []


def test_each_kind_is_applied() -> None:
    view = synced_view()
    assert view.receive("n2", json.dumps({"t": "counts", "s": 3, "c": {"1": {"a": 2}}}), 1.0) == [
        CountChanged("1", "a")
    ]
    assert view.remote_count("1", "a") == 2
    view.receive("n2", join(4, "a"), 1.0)
    leave = {"t": "leave", "s": 5, "a": "1", "c": "presence-r", "i": "a"}
    assert view.receive("n2", json.dumps(leave), 1.0) == [MemberRemoved("1", "presence-r", "a")]
    assert view.receive("n2", '{"t":"seen","s":6,"g":[["00ff",3]]}', 1.0) == [
        Seen([(b"\x00\xff", 3)])
    ]
    assert view.receive("n2", '{"t":"sync","s":7,"to":"n1"}', 1.0) == [SendState()]
    assert view.receive("n2", '{"t":"sync","s":8,"to":"n3"}', 1.0) == []
    assert view.receive("n2", '{"t":"hb","s":8,"r":"eu","n":{"1":4}}', 1.0) == []
    assert view.remote_connections("1") == 4 and view.peers["n2"].region == "eu"
    assert sent(view) == []
    assert view.receive("n2", '{"t":"bye","s":9}', 1.0) == [CountChanged("1", "a")]
    assert view.peers == {}


# malformed messages ---------------------------------------------------------------------------
UNREADABLE = [
    "",
    "not json",
    '{"t":"join"',
    "[1, 2]",
    "null",
    '"join"',
    "3",
    '{"t":"join","a":"1","c":"p","i":"1","u":"u"}',  # no "s"
    '{"s":1}',
    '{"t":1,"s":1}',
    '{"t":"hb","s":"1"}',
    '{"t":"hb","s":true}',
    '{"t":"hb","s":1.0}',
    '{"t":"hb","s":-1}',
    '{"t":"hb","s":' + "1" * 5000 + "}",  # more digits than int() takes
    "[" * 100_000 + "]" * 100_000,  # deeper than the recursion limit
]

MALFORMED = [
    '{"t":"join","s":1,"a":1,"c":"p","i":"1","u":"u"}',
    '{"t":"join","s":1,"a":"1","c":"p","i":"1"}',  # no "u"
    '{"t":"join","s":1,"a":"1","c":"p","i":null,"u":"u"}',
    '{"t":"leave","s":1,"a":"1","c":["p"],"i":"1"}',
    '{"t":"counts","s":1}',
    '{"t":"counts","s":1,"c":{"1":{"a":"2"}}}',
    '{"t":"counts","s":1,"c":{"1":[2]}}',
    '{"t":"counts","s":1,"c":{"1":{"a":true}}}',
    '{"t":"cache","s":1,"a":"1","c":"x","e":"e","d":{"p":1},"ttl":3}',
    '{"t":"cache","s":1,"a":"1","c":"x","e":"e","d":"d","ttl":"3"}',
    '{"t":"term","s":1,"a":"1"}',
    '{"t":"seen","s":1,"g":[["zz",1]]}',
    '{"t":"seen","s":1,"g":[["ab"]]}',
    '{"t":"seen","s":1,"g":{"ab":1}}',
    '{"t":"hb","s":1,"r":"eu","n":[]}',
    '{"t":"hb","s":1,"r":5,"n":{}}',
    '{"t":"hb","s":1,"n":{"1":"3"}}',
    '{"t":"sync","s":1,"to":null}',
    '{"t":"state","s":1,"m":{"1":{"p":{"s":["u"]}}}}',
    '{"t":"state","s":1,"m":{"1":{"p":{"s":[7,null]}}}}',
    '{"t":"state","s":1,"m":{"1":{"p":["u"]}}}',
    '{"t":"state","s":1,"k":{"1\\u001fx":["e","d"]}}',
    '{"t":"state","s":1,"k":{"1\\u001fx":["e","d","30"]}}',
    '{"t":"state","s":1,"c":[]}',
    '{"t":"hello","s":1,"v":"2"}',
    '{"t":"hello","s":1,"v":0}',
]


@pytest.mark.parametrize("payload", UNREADABLE, ids=range(len(UNREADABLE)))
def test_an_unreadable_payload_is_logged_and_ignored(
    payload: str, caplog: pytest.LogCaptureFixture
) -> None:
    envelope = control.decode(payload)
    assert envelope.seq == -1 and envelope.message is None and envelope.error
    view = synced_view()
    with caplog.at_level(logging.WARNING, "ressonance.cluster"):
        assert view.receive("n2", payload, 1.0) == []
    assert "malformed control message from node n2" in caplog.text
    assert view.peers["n2"].seq == 2 and sent(view) == []  # not counted: no sequence number


@pytest.mark.parametrize("payload", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_message_is_logged_and_ignored(
    payload: str, caplog: pytest.LogCaptureFixture
) -> None:
    envelope = control.decode(payload)
    assert envelope.seq == 1 and envelope.message is None and envelope.error
    view = ClusterView("n1")
    with caplog.at_level(logging.WARNING, "ressonance.cluster"):
        assert view.receive("n2", payload, 1.0) == []
    assert f"ignored a malformed {envelope.kind!r} message from node n2" in caplog.text
    assert view.rosters == {} and view.remote_channels("1") == {} and len(view.cache) == 0


def test_a_malformed_message_still_counts_its_number() -> None:
    view = synced_view()
    view.receive("n2", '{"t":"join","s":3,"a":1}', 1.0)
    view.receive("n2", join(4, "a"), 1.0)
    assert sent(view) == []


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["ab", "00ff", "1\x1fx"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)


@st.composite
def wire_messages(draw: st.DrawFn) -> str:
    """A message of a known kind whose keys hold anything JSON."""
    kind = draw(st.sampled_from(control.KINDS))
    keys = [f.key for f in kind.fields] + ["v", "zz"]
    wire = {"t": kind.tag, "s": draw(st.integers(0, 10))}
    for key in draw(st.lists(st.sampled_from(keys), unique=True)):
        wire[key] = draw(json_values)
    return json.dumps(wire)


@settings(max_examples=300, deadline=None, database=None)
@given(wire_messages())
def test_decoding_never_raises_and_what_decodes_encodes_the_same(payload: str) -> None:
    envelope = control.decode(payload)
    if envelope.message is None:
        assert envelope.error
        return
    again = control.decode(control.encode(envelope.message, envelope.seq))
    assert again.message == envelope.message
    view = ClusterView("n1")
    view.receive("n2", payload, 1.0)  # applying whatever decoded does not raise either


# version 2: the debug console's kinds and the nodes' stats ----------------------------------
def debug(seq: int, **extra: Any) -> str:
    return json.dumps({"t": "debug", "s": seq, "a": "1", "k": "occupied", "w": 5.0, **extra})


def test_a_lost_debug_entry_asks_no_one_for_a_state() -> None:
    n2 = ClusterView("n2")
    n2.join("1", "presence-r", "a", Member("a", None))  # 1
    n2.debug(control.Debug("1", "subscribed", 5.0, "presence-r", "a"))  # aside: repeats 1
    n2.debug(control.Debug("1", "occupied", 5.0, "presence-r"))  # lost below
    n2.join("1", "presence-r", "b", Member("b", None))  # 2
    join1, debug1, _lost, join2 = n2.messages_to_send()
    assert [control.decode(p).seq for p in (join1, debug1, _lost, join2)] == [1, 1, 1, 2]
    assert control.numbering("debug") == control.ASIDE
    view = synced_view()  # n2's hello and state were 1 and 2 there: renumber
    view.peers["n2"].seq = 0
    view.receive("n2", join1, 1.0)
    (effect,) = view.receive("n2", debug1, 1.0)
    assert isinstance(effect, DebugEntry) and effect.node_id == "n2"
    assert effect.entry == control.Debug("1", "subscribed", 5.0, "presence-r", "a")
    view.receive("n2", join2, 1.0)
    assert sent(view) == []  # the lost entry is no gap
    assert view.peers["n2"].seq == 2


def test_a_debug_entry_neither_checks_nor_moves_the_number() -> None:
    view = synced_view()
    assert view.receive("n2", debug(9), 1.0) != []  # out of step: not checked
    assert view.peers["n2"].seq == 2
    assert view.receive("n2", join(3, "a"), 1.0) != []
    assert sent(view) == []


def test_watch_takes_the_next_number_and_goes_to_every_release() -> None:
    view = ClusterView("n1")
    view.watch("1", 30.0)
    view.terminate("1", "u")
    watch, term = view.messages_to_send()
    assert json.loads(watch) == {"t": "watch", "a": "1", "ttl": 30.0, "s": 1, "v": 2}
    assert control.decode(term).seq == 2
    assert control.numbering("watch") == control.NEXT
    other = synced_view()
    assert other.receive("n2", '{"t":"watch","s":3,"a":"1","ttl":30}', 1.0) == [DebugWatch("1", 30)]
    assert sent(other) == []


def test_debug_entries_go_out_only_while_every_node_reads_version_2() -> None:
    view = ClusterView("n1")
    assert view.forwardable()  # alone
    view.receive("n2", '{"t":"hb","s":0,"v":2}', 1.0)
    assert view.forwardable()
    view.receive("n3", '{"t":"hb","s":0}', 1.0)  # a release before version 2
    assert not view.forwardable()
    view.drop("n3")
    assert view.forwardable()


def test_watch_and_debug_of_a_newer_release_are_read_by_the_rules() -> None:
    view = synced_view()
    effects = view.receive("n2", debug(2, v=3, k="presence", q=[1], c=None, o=None), 1.0)
    assert effects == [DebugEntry("n2", control.Debug("1", "presence", 5.0))]
    newer_watch = '{"t":"watch","s":3,"v":3,"a":"1","ttl":10,"scope":{"channels":["x"]}}'
    assert view.receive("n2", newer_watch, 1.0) == [DebugWatch("1", 10)]
    assert view.receive("n2", '{"t":"dbg2","s":4,"a":"1"}', 1.0) == []  # a newer kind
    assert view.receive("n2", join(5, "a"), 1.0) != []
    assert sent(view) == []


@pytest.mark.parametrize(
    "payload",
    [
        '{"t":"watch","s":3,"a":"1"}',  # no ttl
        '{"t":"watch","s":3,"a":"1","ttl":"30"}',
        '{"t":"debug","s":2,"a":"1","w":5}',  # no kind
        '{"t":"debug","s":2,"a":"1","k":"error","w":5,"o":"4009"}',
        '{"t":"debug","s":2,"a":"1","k":"error","w":5,"x":1.5}',
    ],
)
def test_a_malformed_watch_or_debug_is_ignored(
    payload: str, caplog: pytest.LogCaptureFixture
) -> None:
    view = synced_view()
    with caplog.at_level(logging.WARNING, "ressonance.cluster"):
        assert view.receive("n2", payload, 1.0) == []
    assert "ignored a malformed" in caplog.text


def test_heartbeat_stats_are_sent_kept_and_read_by_either_release() -> None:
    n2 = ClusterView("n2")
    n2.heartbeat({"1": 3}, {"cpu": 1.5, "messages_in": 10})
    (hb,) = n2.messages_to_send()
    assert json.loads(hb)["x"] == {"cpu": 1.5, "messages_in": 10}
    assert n2.local.stats == {"cpu": 1.5, "messages_in": 10}
    n2.heartbeat({"1": 3})  # no new stats: the last ones again
    assert json.loads(n2.messages_to_send()[0])["x"] == {"cpu": 1.5, "messages_in": 10}
    n2.send_state({}, {}, 0.0)
    assert json.loads(n2.messages_to_send()[0])["x"] == {"cpu": 1.5, "messages_in": 10}
    view = synced_view()
    view.receive("n2", hb.replace('"s":0', '"s":2'), 1.0)
    assert view.peers["n2"].stats == {"cpu": 1.5, "messages_in": 10.0}
    # a heartbeat of the release before (no "x"): no stats, nothing else changes
    view.receive("n2", '{"t":"hb","s":2,"r":"eu","n":{"1":4}}', 2.0)
    assert view.peers["n2"].stats == {} and view.remote_connections("1") == 4
    # stats a newer release adds that are no numbers are skipped, not the heartbeat
    odd = '{"t":"hb","s":2,"n":{"1":5},"x":{"cpu":2,"up":true,"name":"x","big":1e400}}'
    view.receive("n2", odd, 3.0)
    assert view.peers["n2"].stats == {"cpu": 2.0, "up": 1.0, "big": float("inf")}
    assert view.remote_connections("1") == 5 and sent(view) == []
    state = '{"t":"state","s":3,"x":{"uptime":9}}'
    view.receive("n2", state, 4.0)
    assert view.peers["n2"].stats == {"uptime": 9.0}
