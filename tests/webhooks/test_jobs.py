"""The Recorder (webhooks/recorder.py): client events logged per app (socket id, frame) and
other events recorded in order, cut into chunks of at most CHUNK_MAX entries, on its timer or
on cut()/close(), pushed in order by one task, kept first in line and retried while the queue
is down, within a bounded buffer; and expand (webhooks/jobs.py): the
jobs of a chunk, their ids, bodies, order keys and batches, apps that are gone, and the saved
states of a chunk taken again."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import zlib

import pytest

from ressonance.models import App, Webhook, WebhookEvent
from ressonance.storage.base import Unavailable
from ressonance.webhooks import job_json
from ressonance.webhooks.base import CHUNK_EVERY, CHUNK_MAX, EVENT, JOB, Chunk, Job, JobState
from ressonance.webhooks.jobs import BATCH_MAX, event_json, expand, job_id
from ressonance.webhooks.memory import MemoryQueue
from ressonance.webhooks.recorder import Recorder
from tests.webhooks.virtual_time import WALL_START, virtual_time

OCCUPIED = Webhook("https://a.example/hook", ("channel_occupied",), "presence-")
MEMBERS = Webhook(
    "https://b.example/hook",
    ("member_added", "channel_occupied"),
    headers=(("X-Token", "t1"),),
)
SUFFIX = Webhook("https://c.example/hook", ("channel_occupied",), channel_name_ends_with="-x")
CLIENT = Webhook("https://d.example/hook", ("client_event",))
APP = App(id="app1", key="k1", secret="s1", webhooks=(OCCUPIED, MEMBERS, SUFFIX))
BATCHED = App(id="app2", key="k2", secret="s2", webhooks=(OCCUPIED, MEMBERS), webhook_batching=True)
CLIENTS = App(id="app3", key="k3", secret="s3", webhooks=(CLIENT,))
APPS: dict[str, App | None] = {app.id: app for app in (APP, BATCHED, CLIENTS)}
TENANTS = {"app2"}
CHUNK_ID = "0123456789abcdef0123"
CREATED = 1_800_000_000.5  # time_ms 1800000000500


def entry(app: App, event: WebhookEvent) -> tuple[str, str, str]:
    return (app.id, EVENT, event_json(event))


def flat(count: int, start: int = 0) -> list[str]:
    """``count`` client events of presence-a (user ``n`` on socket ``1.n``) as the node logs
    them: socket id, frame, socket id, frame ..."""
    out: list[str] = []
    for n in range(start, start + count):
        frame = json.dumps(
            {"event": "client-x", "channel": "presence-a", "data": "{}", "user_id": str(n)},
            separators=(",", ":"),
        )
        out.extend((f"1.{n}", frame))
    return out


def user_ids(chunks: list[Chunk]) -> list[str]:
    return [json.loads(text)["user_id"] for c in chunks for _, _, text in c.entries()]


def make(entries: list[tuple[str, str, str]], states: dict[str, JobState] | None = None) -> Chunk:
    chunk = Chunk.of(CHUNK_ID, CREATED, entries)
    chunk.states = dict(states or {})
    return chunk


def expanded(chunk: Chunk, apps: dict[str, App | None] = APPS) -> list[Job]:
    jobs, gone = expand(chunk, apps, TENANTS.__contains__)
    assert gone == 0
    return jobs


def hook_id(index: int, webhook: Webhook, chunk_id: str = CHUNK_ID) -> str:
    return f"msg_{chunk_id}{index:04x}{zlib.crc32(webhook.url.encode()):08x}"


def events_of(job: Job) -> list[dict[str, object]]:
    body = json.loads(job.body)
    assert set(body) == {"time_ms", "events"} and body["time_ms"] == int(job.created_at * 1000)
    return list(body["events"])


# Recorder


@pytest.mark.asyncio
async def test_cut_makes_a_chunk_of_the_logged_entries_and_close_waits_for_its_push() -> None:
    """cut() turns what was recorded (an event, then an app's client events logged as socket
    id, frame) into one chunk stamped with the clock, in order, clears the same list object
    the node extends, and counts the events as recorded, waiting, then pushed; close() waits
    until the queue kept it."""
    queue = MemoryQueue()
    with virtual_time() as clock:
        recorder = Recorder(queue.push, clock=clock.wall)
        log = recorder.log("app3")
        assert recorder.log("app3") is log  # the node's state holds it
        occupied = WebhookEvent("channel_occupied", "presence-a")
        recorder.event(APP, occupied)
        frame = '{"event":"client-x","channel":"private-a","data":"{}"}'
        log += ("123.456", frame)
        assert (recorder.recorded, recorder.waiting, recorder.pushed) == (0, 2, 0)
        recorder.cut()
        assert recorder.log("app3") is log and log == []
        assert (recorder.recorded, recorder.waiting, recorder.pushed) == (2, 2, 0)
        await asyncio.wait_for(recorder.close(), 5)
        assert (recorder.recorded, recorder.waiting, recorder.pushed) == (2, 0, 2)
    (chunk,) = await queue.take(10)
    assert re.fullmatch(r"[0-9a-f]{20}", chunk.id)
    assert chunk.created_at == WALL_START and chunk.size == 2
    assert chunk.entries() == [
        ("app1", EVENT, '{"name":"channel_occupied","channel":"presence-a"}'),
        ("app3", "123.456", frame),
    ]
    assert (recorder.dropped, recorder.push_failures) == (0, 0)


@pytest.mark.asyncio
async def test_event_records_the_json_of_the_webhook_event() -> None:
    """event(app, WebhookEvent) records (app id, EVENT, event_json(event)), after the client
    events logged before it: the compact JSON of WebhookEvent.to_json, fields in order."""
    queue = MemoryQueue()
    recorder = Recorder(queue.push)
    recorder.log("app1").extend(("1.1", '{"event":"client-x","channel":"a","data":"1"}'))
    recorder.event(APP, WebhookEvent("member_added", "presence-a", user_id="u1"))
    recorder.log("app1").extend(("1.1", '{"event":"client-x","channel":"a","data":"2"}'))
    recorder.event(BATCHED, WebhookEvent("subscription_count", "counted", subscription_count=3))
    await asyncio.wait_for(recorder.close(), 5)
    (made,) = await queue.take(10)
    assert [item for e in made.entries() for item in e] == [
        "app1",
        "1.1",
        '{"event":"client-x","channel":"a","data":"1"}',
        "app1",
        "e",
        '{"name":"member_added","channel":"presence-a","user_id":"u1"}',
        "app1",
        "1.1",
        '{"event":"client-x","channel":"a","data":"2"}',
        "app2",
        "e",
        '{"name":"subscription_count","channel":"counted","subscription_count":3}',
    ]
    assert (recorder.waiting, recorder.recorded, recorder.pushed) == (0, 4, 4)


@pytest.mark.parametrize(
    "event",
    [
        WebhookEvent(
            "client_event",
            "presence-x",
            user_id='u\u00e9"',
            event="client-a",
            data='{"a":"\\u2028 é"}',
            socket_id="1.2",
        ),
        WebhookEvent("subscription_count", "counted", subscription_count=3),
        WebhookEvent("channel_occupied", "line\nbreak"),
        WebhookEvent("member_added", "presence-room", user_id="\U0001f600"),
    ],
)
def test_event_json_is_the_bytes_the_json_encoder_writes(event: WebhookEvent) -> None:
    """event_json is json.dumps(event.to_json()) compact and ASCII-escaped: no raw newline
    (an entry is one line of its chunk), the same text json would write."""
    text = event_json(event)
    assert text == json.dumps(event.to_json(), separators=(",", ":"))
    assert "\n" not in text and text.isascii()


@pytest.mark.asyncio
async def test_the_timer_cuts_a_chunk_every_chunk_every_seconds() -> None:
    """After start(), the entries are cut every CHUNK_EVERY (0.1 s) seconds; no entries, no
    chunk; close() stops the timer."""
    assert CHUNK_EVERY == 0.1
    queue = MemoryQueue()
    with virtual_time() as clock:
        recorder = Recorder(queue.push, clock=clock.wall)
        recorder.start()
        recorder.log(APP.id).extend(flat(1))
        await asyncio.sleep(0.09)
        assert await queue.depth() == 0 and recorder.waiting == 1
        await asyncio.sleep(0.02)  # 0.11 s
        (first,) = await queue.take(10)
        assert first.created_at == pytest.approx(WALL_START + 0.1, abs=1e-6)
        assert (first.size, recorder.pushed, recorder.waiting) == (1, 1, 0)
        await asyncio.sleep(0.1)  # 0.21 s: nothing recorded, nothing pushed
        assert await queue.take(10) == []
        recorder.log(APP.id).extend(flat(2, start=1))
        await asyncio.sleep(0.1)  # 0.31 s
        (second,) = await queue.take(10)
        assert second.created_at == pytest.approx(WALL_START + 0.3, abs=1e-6)
        assert user_ids([first, second]) == ["0", "1", "2"]
        assert second.id != first.id
        await asyncio.wait_for(recorder.close(), 5)
        recorder.log(APP.id).extend(flat(1, start=3))
        await asyncio.sleep(1)
        assert await queue.take(10) == [] and recorder.waiting == 1


@pytest.mark.asyncio
async def test_a_large_cut_is_chunks_of_chunk_max_pushed_in_order_by_one_task() -> None:
    """2,500 entries are three chunks (1000, 1000, 500) in entry order, pushed in order (in
    one push: the chunks waiting go together) by a single task."""
    assert CHUNK_MAX == 1000
    queue = MemoryQueue()
    pushes: list[tuple[str, int]] = []
    under_way = 0
    most = 0

    async def push(chunks: list[Chunk]) -> None:
        nonlocal under_way, most
        under_way += 1
        most = max(most, under_way)
        pushes.extend((chunk.id, chunk.size) for chunk in chunks)
        await asyncio.sleep(0.01)
        await queue.push(chunks)
        under_way -= 1

    with virtual_time() as clock:
        recorder = Recorder(push, clock=clock.wall)
        recorder.log(APP.id).extend(flat(2_500))
        tasks_before = len(asyncio.all_tasks())
        recorder.cut()
        assert len(asyncio.all_tasks()) == tasks_before + 1
        assert (recorder.recorded, recorder.waiting) == (2_500, 2_500)
        await asyncio.wait_for(recorder.close(), 5)
    chunks = await queue.take(10)
    assert [(c.id, c.size) for c in chunks] == pushes
    assert [c.size for c in chunks] == [1000, 1000, 500] and most == 1
    assert len({c.id for c in chunks}) == 3
    assert all(c.created_at == WALL_START for c in chunks)
    assert user_ids(chunks) == [str(n) for n in range(2_500)]
    assert (recorder.pushed, recorder.waiting, recorder.dropped) == (2_500, 0, 0)


@pytest.mark.asyncio
async def test_a_failed_push_keeps_the_chunk_first_and_the_buffer_drops_beyond(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the queue is down the chunks stay first in line and are pushed again every
    retry_every (with those cut meanwhile, in order); the entries up to ``buffer`` wait (none
    dropped at exactly the bound), those beyond are dropped and counted; once the queue is
    back the chunks go in order."""
    queue = MemoryQueue()
    attempts: list[tuple[float, int]] = []
    down = True

    with virtual_time() as clock:

        async def push(chunks: list[Chunk]) -> None:
            attempts.append((round(clock.elapsed(), 3), tuple(c.size for c in chunks)))
            if down:
                await asyncio.sleep(0.05)  # the database takes its time to fail
                raise Unavailable("database is down")
            await queue.push(chunks)

        recorder = Recorder(push, clock=clock.wall, buffer=12, retry_every=0.2)
        recorder.log(APP.id).extend(flat(10))
        recorder.cut()
        await asyncio.sleep(0.1)  # the ten are being pushed
        recorder.log(APP.id).extend(flat(2, start=10))
        recorder.cut()  # the buffer is full, nothing dropped yet
        assert (recorder.recorded, recorder.waiting, recorder.dropped) == (12, 12, 0)
        assert not [r for r in caplog.records if "dropped" in r.getMessage()]
        recorder.log(APP.id).extend(flat(3, start=12))
        recorder.cut()  # beyond the buffer: dropped
        assert (recorder.recorded, recorder.waiting, recorder.dropped) == (12, 12, 3)
        (said,) = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert said.levelname == "WARNING" and said.getMessage().endswith("(3 dropped so far)")
        await asyncio.sleep(0.5)  # 0.6 s
        assert attempts == [(0.0, (10,)), (0.25, (10, 2)), (0.5, (10, 2))]
        assert await queue.depth() == 0 and recorder.pushed == 0
        down = False
        await asyncio.wait_for(recorder.close(), 5)
        assert attempts[3:] == [(0.75, (10, 2))]
    chunks = await queue.take(10)
    assert user_ids(chunks) == [str(n) for n in range(12)]
    assert (recorder.pushed, recorder.waiting, recorder.dropped) == (12, 0, 3)
    assert recorder.push_failures == 3


@pytest.mark.asyncio
async def test_a_cut_larger_than_the_room_left_keeps_its_first_entries() -> None:
    """A cut with more entries than the buffer has room for keeps the first ones, in order,
    and drops the rest."""
    queue = MemoryQueue()
    recorder = Recorder(queue.push, buffer=4)
    recorder.log(APP.id).extend(flat(6))
    recorder.cut()
    await asyncio.wait_for(recorder.close(), 5)
    assert user_ids(await queue.take(10)) == ["0", "1", "2", "3"]
    assert (recorder.recorded, recorder.pushed, recorder.dropped) == (4, 4, 2)


# expand


def test_a_job_for_each_webhook_that_wants_each_event() -> None:
    """Event types and channel filters pick the webhooks; jobs come in entry order, then in
    the app's webhook order, one body per event, the webhook's headers, and an id made of the
    chunk id, the entry's index and the URL's CRC-32."""
    occupied = WebhookEvent("channel_occupied", "presence-room")
    chunk = make(
        [
            entry(APP, occupied),
            entry(APP, WebhookEvent("member_added", "presence-room", user_id="u1")),
            entry(APP, WebhookEvent("channel_vacated", "presence-room")),  # nobody wants it
            entry(APP, WebhookEvent("channel_occupied", "room-x")),
        ]
    )
    jobs = expanded(chunk)
    occupied_body = (
        b'{"time_ms":1800000000500,"events":'
        b'[{"name":"channel_occupied","channel":"presence-room"}]}'
    )
    member_body = (
        b'{"time_ms":1800000000500,"events":'
        b'[{"name":"member_added","channel":"presence-room","user_id":"u1"}]}'
    )
    room_body = (
        b'{"time_ms":1800000000500,"events":[{"name":"channel_occupied","channel":"room-x"}]}'
    )

    def job(index: int, webhook: Webhook, channel: str, name: str, body: bytes) -> Job:
        return Job(
            id=hook_id(index, webhook),
            app_id="app1",
            url=webhook.url,
            order_key=f"app1|{webhook.url}|{channel}",
            body=body,
            events=(name,),
            headers=webhook.headers,
            tenant=False,
            created_at=CREATED,
            chunk=CHUNK_ID,
        )

    assert jobs == [
        job(0, OCCUPIED, "presence-room", "channel_occupied", occupied_body),
        job(0, MEMBERS, "presence-room", "channel_occupied", occupied_body),
        job(1, MEMBERS, "presence-room", "member_added", member_body),
        job(3, MEMBERS, "room-x", "channel_occupied", room_body),
        job(3, SUFFIX, "room-x", "channel_occupied", room_body),
    ]
    assert jobs[0].id == "msg_0123456789abcdef0123" + "0000" + "bc671000"
    assert jobs[2].id == "msg_0123456789abcdef0123" + "0001" + "c00635db"
    assert all(re.fullmatch(r"msg_[0-9a-f]{32}", j.id) for j in jobs)


def test_ids_and_bodies_are_the_same_when_a_chunk_is_expanded_again() -> None:
    """expand is deterministic: the same chunk gives equal jobs (ids, bodies, keys), the ids
    unique per (event, webhook); another chunk gives other ids."""
    entries = [entry(APP, WebhookEvent("channel_occupied", f"presence-{n}")) for n in range(300)]
    first = expanded(make(entries))
    again = expanded(Chunk.of(CHUNK_ID, CREATED, entries))
    assert first == again and len(first) == 600
    assert len({j.id for j in first}) == 600
    other = expanded(Chunk.of("ffffffffffffffffffff", CREATED, entries))
    assert not {j.id for j in other} & {j.id for j in first}
    assert [j.body for j in other] == [j.body for j in first]


@pytest.mark.parametrize(
    ("frame", "event"),
    [
        (  # data a string: stays the same string
            '{"event":"client-x","channel":"private-a","data":"{\\"a\\":1}"}',
            '{"name":"client_event","channel":"private-a","event":"client-x",'
            '"data":"{\\"a\\":1}","socket_id":"123.456"}',
        ),
        (  # data an object: its compact JSON text, as a string
            '{"event":"client-x","channel":"private-a","data":{"a": [1, 2], "b": "\u00e9"}}',
            '{"name":"client_event","channel":"private-a","event":"client-x",'
            '"data":"{\\"a\\":[1,2],\\"b\\":\\"\\u00e9\\"}","socket_id":"123.456"}',
        ),
        (  # presence: the sender's user_id
            '{"event":"client-x","channel":"presence-a","data":"hi","user_id":"u1"}',
            '{"name":"client_event","channel":"presence-a","user_id":"u1","event":"client-x",'
            '"data":"hi","socket_id":"123.456"}',
        ),
        (  # not presence: no user_id
            '{"event":"client-x","channel":"private-a","data":"hi","user_id":"u1"}',
            '{"name":"client_event","channel":"private-a","event":"client-x",'
            '"data":"hi","socket_id":"123.456"}',
        ),
    ],
)
def test_the_body_of_a_client_event_frame(frame: str, event: str) -> None:
    """A client event entry (tag = the sender's socket id, text = the frame its subscribers
    got) becomes the client_event webhook event: exact body bytes."""
    (job,) = expanded(make([("app3", "123.456", frame)]))
    assert job.body == b'{"time_ms":1800000000500,"events":[' + event.encode() + b"]}"
    assert (job.id, job.events) == (hook_id(0, CLIENT), ("client_event",))
    channel = json.loads(frame)["channel"]
    assert job.order_key == f"app3|{CLIENT.url}|{channel}"


def test_the_body_of_an_event_entry_is_its_text() -> None:
    """An EVENT entry's text is the event's JSON in the body, byte for byte."""
    event = WebhookEvent("channel_occupied", "presence-\u00e9\u2028")
    (job, _) = expanded(make([entry(APP, event)]))
    assert job.body == (
        b'{"time_ms":1800000000500,"events":'
        b'[{"name":"channel_occupied","channel":"presence-\\u00e9\\u2028"}]}'
    )


def test_a_job_entry_is_the_job_as_it_was_with_its_chunk_set() -> None:
    """A JOB entry (a replayed dead letter) is its job whole (id, body, headers, tenant,
    created_at, attempts reset by replay_chunk), whatever the app's webhooks are now, with
    ``chunk`` set to the chunk it came in; it keeps its place among the other entries."""
    letter = Job(
        id="msg_" + "ab" * 16,
        app_id="app1",
        url="https://gone.example/hook",
        order_key="app1|https://gone.example/hook|presence-a",
        body=b'{"time_ms":1,"events":[{"name":"member_added","channel":"presence-a"}]}',
        events=("member_added",),
        headers=(("X-Token", "t0"),),
        tenant=True,
        created_at=1_700_000_000.0,
        attempts=7,
        next_at=1_700_000_100.0,
        last_error="503",
        first_at=1_700_000_000.0,
    )
    replay = job_json.replay_chunk(letter, CREATED)
    (app_id, tag, text) = replay.entries()[0]
    assert (app_id, tag) == ("app1", JOB)
    occupied = entry(APP, WebhookEvent("channel_occupied", "room-x"))
    chunk = make([occupied, (app_id, tag, text), occupied])
    jobs = expanded(chunk)
    fresh = dataclasses.replace(
        letter, attempts=0, next_at=0.0, last_error="", first_at=0.0, created_at=CREATED
    )
    assert jobs[2] == dataclasses.replace(fresh, chunk=CHUNK_ID)
    assert [j.id for j in jobs] == [
        hook_id(0, MEMBERS),
        hook_id(0, SUFFIX),
        letter.id,
        hook_id(2, MEMBERS),
        hook_id(2, SUFFIX),
    ]
    (alone,) = expanded(make([(app_id, tag, job_json.dumps(letter))]))
    assert alone == dataclasses.replace(letter, chunk=CHUNK_ID)


def test_a_batch_is_one_job_per_app_and_webhook_in_a_chunk() -> None:
    """With webhook_batching, the events of a chunk for one webhook are one job (its id that
    of its first event), in order across channels, keyed app|url; the tenant flag comes from
    is_tenant."""
    chunk = make(
        [
            entry(BATCHED, WebhookEvent("channel_occupied", "presence-a")),
            entry(BATCHED, WebhookEvent("member_added", "presence-b", user_id="u1")),
            entry(APP, WebhookEvent("member_added", "presence-b", user_id="u2")),
            entry(BATCHED, WebhookEvent("channel_occupied", "presence-b")),
        ]
    )
    jobs = expanded(chunk)
    assert [(j.id, j.app_id, j.order_key, j.events, j.tenant) for j in jobs] == [
        (hook_id(0, OCCUPIED), "app2", f"app2|{OCCUPIED.url}", ("channel_occupied",) * 2, True),
        (
            hook_id(0, MEMBERS),
            "app2",
            f"app2|{MEMBERS.url}",
            ("channel_occupied", "member_added", "channel_occupied"),
            True,
        ),
        (hook_id(2, MEMBERS), "app1", f"app1|{MEMBERS.url}|presence-b", ("member_added",), False),
    ]
    assert jobs[0].body == (
        b'{"time_ms":1800000000500,"events":[{"name":"channel_occupied","channel":"presence-a"},'
        b'{"name":"channel_occupied","channel":"presence-b"}]}'
    )
    assert [event["channel"] for event in events_of(jobs[1])] == [
        "presence-a",
        "presence-b",
        "presence-b",
    ]
    assert jobs[1].headers == (("X-Token", "t1"),) and jobs[1].created_at == CREATED


def test_a_batch_has_at_most_batch_max_events() -> None:
    """250 events for one webhook are batches of 100, 100 and 50, in order, each job with the
    id of its first event."""
    assert BATCH_MAX == 100
    app = App(id="app4", key="k4", secret="s4", webhooks=(MEMBERS,), webhook_batching=True)
    chunk = make(
        [
            entry(app, WebhookEvent("member_added", "presence-a", user_id=str(n)))
            for n in range(2 * BATCH_MAX + 50)
        ]
    )
    jobs = expanded(chunk, {"app4": app})
    assert [(j.id, len(j.events)) for j in jobs] == [
        (hook_id(0, MEMBERS), 100),
        (hook_id(100, MEMBERS), 100),
        (hook_id(200, MEMBERS), 50),
    ]
    assert [event["user_id"] for j in jobs for event in events_of(j)] == [
        str(n) for n in range(250)
    ]
    assert {j.order_key for j in jobs} == {f"app4|{MEMBERS.url}"}


def test_the_events_of_apps_gone_or_disabled_are_counted() -> None:
    """Entries of an app that is missing, None or disabled make no job and are counted in
    the second value; the other apps' jobs keep their entry indexes."""
    disabled = dataclasses.replace(CLIENTS, enabled=False)
    member = WebhookEvent("member_added", "presence-a")
    chunk = make(
        [
            ("app9", EVENT, event_json(member)),
            entry(APP, member),
            ("app3", "1.2", '{"event":"client-x","channel":"private-a","data":"{}"}'),
            ("app2", EVENT, event_json(member)),
            ("app9", EVENT, event_json(member)),
        ]
    )
    apps: dict[str, App | None] = {"app1": APP, "app2": None, "app3": disabled}
    jobs, gone = expand(chunk, apps, TENANTS.__contains__)
    assert gone == 4
    assert [j.id for j in jobs] == [hook_id(1, MEMBERS)]


def test_saved_states_are_applied_and_ended_jobs_left_out() -> None:
    """The states a queue saved for a chunk's jobs: a retried job comes back with its
    attempts, next attempt, last error and first failure; an ended one is left out."""
    chunk = make(
        [
            entry(APP, WebhookEvent("member_added", "presence-a")),
            entry(APP, WebhookEvent("member_added", "presence-b")),
            entry(APP, WebhookEvent("member_added", "presence-c")),
        ]
    )
    plain = expanded(chunk)
    assert [j.id for j in plain] == [hook_id(n, MEMBERS) for n in range(3)]
    retried = JobState(3, CREATED + 7, "503", CREATED + 1)
    chunk.states = {hook_id(0, MEMBERS): JobState(ended=True), hook_id(2, MEMBERS): retried}
    jobs = expanded(chunk)
    assert jobs == [
        plain[1],
        dataclasses.replace(
            plain[2], attempts=3, next_at=CREATED + 7, last_error="503", first_at=CREATED + 1
        ),
    ]
    chunk.states = {j.id: JobState(ended=True) for j in plain}
    assert expand(chunk, APPS, TENANTS.__contains__) == ([], 0)


def test_two_webhooks_with_the_same_url_get_distinct_job_ids() -> None:
    """One URL twice in an app (other headers, or even the same webhook twice): one job each,
    distinct ids (receivers de-duplicate on webhook-id), the first keeping the URL's id."""
    url = "https://a.example/hook"
    first = Webhook(url, ("channel_occupied",), headers=(("X-Team", "a"),))
    second = Webhook(url, ("channel_occupied",), headers=(("X-Team", "b"),))
    entry = ("app1", EVENT, event_json(WebhookEvent("channel_occupied", "room")))
    made = Chunk.of("0" * 20, 1.0, [entry])
    for hooks in ((first, second), (first, first)):
        for batching in (False, True):
            app = App(id="app1", key="k", secret="s", webhooks=hooks, webhook_batching=batching)
            jobs, _ = expand(made, {"app1": app}, lambda a: False)
            assert [job.headers for job in jobs] == [hook.headers for hook in hooks]
            assert jobs[0].id == job_id(made.id, 0, url)
            assert jobs[1].id == job_id(made.id, 0, f"{url}#1") != jobs[0].id


@pytest.mark.asyncio
async def test_no_chunk_holds_more_than_chunk_max_entries() -> None:
    """An event recorded, then 1,500 client events logged, then 999 more: the chunks are
    filled to CHUNK_MAX exactly, in order (1000, 1000, 500), never more."""
    queue = MemoryQueue()
    recorder = Recorder(queue.push)
    recorder.event(APP, WebhookEvent("channel_occupied", "presence-a"))
    recorder.log(APP.id).extend(flat(1_500))
    recorder.fold()
    recorder.log(APP.id).extend(flat(999, start=1_500))
    await asyncio.wait_for(recorder.close(), 5)
    chunks = await queue.take(10)
    assert [c.size for c in chunks] == [1000, 1000, 500]
    names = [json.loads(text).get("name") for c in chunks for _, _, text in c.entries()]
    assert names[0] == "channel_occupied" and names.count(None) == 2_499
    texts = [json.loads(text) for c in chunks for _, _, text in c.entries()][1:]
    assert [t["user_id"] for t in texts] == [str(n) for n in range(2_499)]
