"""The JobQueue contract (ressonance.webhooks.base), the same tests for every queue: MemoryQueue
(the reference), DatabaseQueue on SQLite (a file in ``tmp_path``) and on a private PostgreSQL,
RedisQueue on a private redis-server (tests/support/services.py). Each test gets a fresh store
(a new MemoryQueue, a new SQLite file, a new PostgreSQL database, a new Redis key prefix); each
durable queue object a connection of its own, as separate nodes or a restarted one would have
(the memory "store" is one MemoryQueue that every queue object of a test shares).

The chunks are real ones (webhook events of an app, client events, replayed jobs), and the jobs
a test saves, ends or gives up are those :func:`ressonance.webhooks.jobs.expand` makes of them,
as the leader's Dispatcher does."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from ressonance.models import App, Webhook, WebhookEvent
from ressonance.scaling.redis import client as redis_client
from ressonance.storage.base import Database, Unavailable
from ressonance.storage.postgres import PostgresDatabase
from ressonance.storage.sqlite import SqliteDatabase
from ressonance.webhooks import job_json
from ressonance.webhooks.base import (
    DEAD_LETTER_DAYS,
    EVENT,
    JOB,
    Chunk,
    Job,
    JobQueue,
    JobState,
)
from ressonance.webhooks.jobs import event_json, expand
from ressonance.webhooks.memory import MemoryQueue
from ressonance.webhooks.queue_db import DatabaseQueue
from ressonance.webhooks.queue_redis import RedisQueue
from tests.support.services import PostgresService, Service, postgres_server, redis_server

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]
BOUND = 10.0  # seconds, the bound on any one step
NOW = 1_700_000_000.0
DAY = 86_400.0

# channel_occupied: one job per event (HOOK); channel_vacated: two (HOOK, then VACATED)
HOOK = Webhook("https://a.example/hook", ("channel_occupied", "channel_vacated"))
VACATED = Webhook("https://b.example/hook", ("channel_vacated",), headers=(("X-Token", "t1"),))
APPS: dict[str, App | None] = {
    "app1": App(id="app1", key="k1", secret="s1", webhooks=(HOOK, VACATED)),
    "app2": App(id="app2", key="k2", secret="s2", webhooks=(HOOK,)),
}


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresService]:
    with postgres_server(tmp_path_factory.mktemp("postgres")) as service:
        yield service


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with redis_server(tmp_path_factory.mktemp("redis")) as service:
        yield service


class Store:
    """One backend's store for one test: :meth:`queue` opens another queue object on it."""

    def __init__(self, kind: str, open_queue: Callable[[str], Awaitable[JobQueue]]) -> None:
        self.kind = kind
        self._open_queue = open_queue
        self.service: Service | None = None  # the server to stop (None: SQLite, memory)
        self.path = ""  # the SQLite file
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def queue(self, node_id: str) -> JobQueue:
        async with asyncio.timeout(BOUND):
            queue = await self._open_queue(node_id)
            await queue.start()
        self._closers.append(queue.close)
        return queue

    def closes(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def close(self) -> None:
        for closer in reversed(self._closers):
            async with asyncio.timeout(BOUND):
                await closer()


async def _database_store(kind: str, make: Callable[[], Database]) -> Store:
    async def open_queue(node_id: str) -> JobQueue:
        db = make()
        async with asyncio.timeout(BOUND):
            await db.start()
        made.closes(db.close)
        return DatabaseQueue(db, node_id)

    made = Store(kind, open_queue)
    return made


def _memory_store() -> Store:
    shared = MemoryQueue()

    async def open_queue(node_id: str) -> JobQueue:
        return shared

    return Store("memory", open_queue)


async def _open_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if kind == "memory":
        return _memory_store()
    if kind == "sqlite":
        path = str(tmp_path / "store" / "ressonance.db")
        made = await _database_store("sqlite", lambda: SqliteDatabase(path, timeout=0.5))
        made.path = path
        return made
    if kind == "postgres":
        service: PostgresService = request.getfixturevalue("pg")
        name = f"t_{uuid.uuid4().hex[:16]}"
        admin = PostgresDatabase(service.url, timeout=BOUND)
        async with asyncio.timeout(BOUND):
            await admin.start()
            try:
                await admin.execute(f"CREATE DATABASE {name}")
            finally:
                await admin.close()
        dsn = f"{service.url.rsplit('/', 1)[0]}/{name}"
        made = await _database_store("postgres", lambda: PostgresDatabase(dsn, timeout=2.0))
        made.service = service
        return made
    server: Service = request.getfixturevalue("redis")
    prefix = f"t{uuid.uuid4().hex[:12]}"

    async def open_redis(node_id: str) -> JobQueue:
        return RedisQueue(redis_client(server.url), prefix, node_id, timeout=2.0)

    made = Store("redis", open_redis)
    made.service = server
    return made


async def _store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made = await _open_store(request.param, request, tmp_path)
    try:
        yield made
    finally:
        await made.close()


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgres", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every queue."""
    async for made in _store(request, tmp_path):
        yield made


@pytest_asyncio.fixture(params=["sqlite", "postgres", "redis"])
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The queues whose store can be down."""
    async for made in _store(request, tmp_path):
        yield made


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The DatabaseQueue's stores."""
    async for made in _store(request, tmp_path):
        yield made


@pytest_asyncio.fixture(params=["redis"])
async def redis_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for made in _store(request, tmp_path):
        yield made


def chunk(
    *channels: str, app_id: str = "app1", name: str = "channel_occupied", at: float = NOW
) -> Chunk:
    """A chunk of one ``name`` webhook event of ``app_id`` per channel, with a fresh id."""
    entries = [(app_id, EVENT, event_json(WebhookEvent(name, channel))) for channel in channels]
    return Chunk.of(uuid.uuid4().hex[:20], at, entries)


def sized(*sizes: int) -> list[Chunk]:
    """Chunks of ``sizes`` entries each."""
    return [chunk(*(f"room-{n}-{i}" for i in range(size))) for n, size in enumerate(sizes)]


def jobs_of(made: Chunk) -> list[Job]:
    """The jobs of ``made`` (its saved states applied, its ended jobs left out)."""
    jobs, gone = expand(made, APPS, lambda app_id: False)
    assert gone == 0
    return jobs


def jobs_of_any(made: Chunk) -> list[Job]:
    """The jobs of a chunk of JOB entries (no app looked up)."""
    jobs, gone = expand(made, {}, lambda app_id: False)
    assert gone == 0
    return jobs


def ids(chunks: list[Chunk]) -> list[str]:
    return [one.id for one in chunks]


def with_states(made: Chunk, states: dict[str, JobState]) -> Chunk:
    return dataclasses.replace(made, states=states)


async def bounded(operation: Awaitable[object]) -> object:
    async with asyncio.timeout(BOUND):
        return await operation


async def test_take_hands_chunks_out_in_push_order_up_to_the_limit(store: Store) -> None:
    """Chunks pushed by two nodes come out in push order, ``limit`` at a time, to either."""
    a = await store.queue("node-a")
    b = await store.queue("node-b")
    first, second, third = sized(1, 2, 3)
    await a.push([first])
    await b.push([second])
    await a.push([third])
    assert await a.take(0) == []
    assert await b.take(2) == [first, second]
    assert await a.take(10) == [third]
    assert await a.take(10) == []
    assert await b.take(10) == []
    fourth = chunk("room-4")
    await b.push([fourth])
    assert await a.take(10) == [fourth]


async def test_a_taken_chunk_is_not_taken_again_by_any_queue(store: Store) -> None:
    """Each chunk is handed out once, whichever queue object (node, connection) takes."""
    a = await store.queue("node-a")
    b = await store.queue("node-b")
    chunks = sized(1, 2, 3, 1, 2)
    for one in chunks:
        await a.push([one])
    assert await a.take(2) == chunks[:2]
    assert await b.take(1) == chunks[2:3]
    again = await store.queue("node-a")  # the same node id on another connection
    assert await again.take(10) == chunks[3:]
    for queue in (a, b, again):
        assert await queue.take(10) == []
    assert await a.depth() == 9  # 1 + 2 + 3 + 1 + 2 entries, taken but not finished


async def test_takes_at_the_same_time_share_the_chunks_out(store: Store) -> None:
    """Three nodes taking at once get every chunk once, none lost, each take in push order."""
    queues = [await store.queue(f"node-{n}") for n in range(3)]
    chunks = sized(*([1] * 30))
    for one in chunks:
        await queues[0].push([one])
    results: list[list[Chunk]] = []
    for _ in range(4):  # 3 queues x 4 chunks a round: 12, 12, 6, then nothing
        async with asyncio.timeout(BOUND):
            results += await asyncio.gather(*(queue.take(4) for queue in queues))
    taken = [one for result in results for one in result]
    assert sorted(ids(taken)) == sorted(ids(chunks))  # each chunk once, none lost
    assert len(taken) == 30
    assert results[-3:] == [[], [], []]
    order = ids(chunks)
    for result in results:
        assert ids(result) == sorted(ids(result), key=order.index)  # each in push order


async def test_take_over_by_another_node_returns_the_saved_states(store: Store) -> None:
    """What the leader saved (a retry's state, ended, dead) comes back in ``Chunk.states``
    when a new leader (another queue object) takes the chunk over; expanded, it gives the jobs
    left with their retry state; a chunk is taken by one leader only."""
    a = await store.queue("node-a")
    first = chunk("room-1", "room-2", name="channel_vacated")  # 4 jobs
    second, third = chunk("room-3"), chunk("room-4", "room-5")
    for one in (first, second, third):
        await a.push([one])
    assert await a.take(2) == [first, second]
    jobs = jobs_of(first)
    assert [(job.url, job.chunk) for job in jobs] == [
        (HOOK.url, first.id),
        (VACATED.url, first.id),
        (HOOK.url, first.id),
        (VACATED.url, first.id),
    ]
    await a.ended(jobs[0])
    retried = jobs[1].retried(NOW + 10, "503 Service Unavailable").retried(NOW + 12, "timeout")
    await a.save(retried)
    assert (retried.attempts, retried.next_at, retried.first_at) == (2, NOW + 14, NOW + 10)
    await a.dead(jobs[2], NOW + 20)
    (only,) = jobs_of(second)
    await a.save(only.retried(NOW + 11, "502 Bad Gateway"))
    await a.ended(only)  # a state saved again replaces the one before

    b = await store.queue("node-b")
    assert await b.take(10) == [third]  # before the take-over: only the one never taken
    await b.take_over()
    got = await b.take(10)
    assert got == [
        with_states(
            first,
            {
                jobs[0].id: JobState(ended=True),
                jobs[1].id: JobState(2, NOW + 14, "timeout", NOW + 10),
                jobs[2].id: JobState(ended=True),
            },
        ),
        with_states(second, {only.id: JobState(ended=True)}),
        third,
    ]
    assert jobs_of(got[0]) == [retried, jobs[3]]  # the ended and the dead are left out
    assert jobs_of(got[1]) == []
    assert await a.take(10) == []
    for one in got:
        await b.finish(one)
    assert await b.depth() == 0
    await b.take_over()
    assert await b.take(10) == []


async def test_finish_forgets_the_chunk_and_the_states_of_its_jobs(store: Store) -> None:
    """A finished chunk is not handed out again (even after a take-over), its entries leave
    the depth, and the states of its jobs are gone: the same chunk pushed again (a new push,
    as after an unknown outcome long after) comes with none."""
    queue = await store.queue("node-a")
    first, second = sized(2, 3)
    await queue.push([first])
    await queue.push([second])
    taken = await queue.take(2)
    assert taken == [first, second]
    first_jobs = jobs_of(first)
    await queue.save(first_jobs[0].retried(NOW + 1, "timeout"))
    await queue.ended(first_jobs[1])
    assert await queue.depth() == 5
    await queue.finish(taken[0])
    assert await queue.depth() == 3
    await queue.take_over()
    assert await queue.take(10) == [second]
    await queue.push([first])
    if store.kind == "redis":  # a writer's chunk pushed again is ignored (kept once) ...
        assert await queue.take(10) == []
        assert isinstance(queue, RedisQueue)  # ... and its states are gone from Redis
        assert await queue._client.exists(queue.state_prefix + first.id) == 0
        return
    assert await queue.take(10) == [first]  # no states: they went with the chunk


async def test_depth_is_the_entries_of_the_chunks_not_finished(store: Store) -> None:
    """depth() = the sum of the sizes of the chunks pushed and not finished, taken or not;
    saving, ending or giving up a job does not change it, finishing its chunk does."""
    queue = await store.queue("node-a")
    assert await queue.depth() == 0
    chunks = sized(1, 3, 2)
    for one in chunks:
        await queue.push([one])
    assert await queue.depth() == 6
    taken = await queue.take(2)
    assert await queue.depth() == 6
    jobs = jobs_of(taken[1])
    await queue.save(jobs[0].retried(NOW, "timeout"))
    await queue.ended(jobs[1])
    await queue.dead(jobs[2], NOW)
    assert await queue.depth() == 6
    await queue.finish(taken[0])
    assert await queue.depth() == 5
    await queue.finish(taken[1])
    assert await queue.depth() == 2


async def test_a_chunk_pushed_twice_is_kept_once(store: Store) -> None:
    """A push tried again (its first outcome unknown) keeps the chunk once: the databases
    and the memory queue know chunks by id; Redis by the writer's last sequence number (the
    chunk id's last 8 hex digits), so a writer's chunks pushed in order are all kept and an
    earlier one pushed again is not."""
    queue = await store.queue("node-a")
    writer = uuid.uuid4().hex[:12]
    first, second, third = (
        dataclasses.replace(made, id=f"{writer}{n:08x}")
        for n, made in enumerate(sized(2, 1, 3), start=1)
    )
    await queue.push([first])
    await queue.push([first])  # tried again: its first push went through
    await queue.push([second])
    await queue.push([first])  # ... later still
    await queue.push([third])
    await queue.push([third])
    assert await queue.depth() == 6
    assert await queue.take(10) == [first, second, third]
    await queue.take_over()
    assert await queue.take(10) == [first, second, third]
    for made in (first, second, third):
        await queue.finish(made)
    assert await queue.depth() == 0
    await queue.take_over()
    assert await queue.take(10) == []


async def test_dead_letters_newest_first_by_app_and_replay_at_the_end(store: Store) -> None:
    """Dead letters are listed newest first, all or one app's, at most ``limit``, with the
    job as given up; a replay pushes a chunk of one JOB entry at the end of the queue whose
    job has the same id and body, its attempts reset; a dead letter is replayed once, an
    unknown id is None; the dead letters are in the store, not the queue object."""
    queue = await store.queue("node-a")
    chunks = [chunk("room-1"), chunk("room-2", app_id="app2"), chunk("room-3")]
    for one in chunks:
        await queue.push([one])
    taken = await queue.take(3)
    (a,), (b,), (c,) = (jobs_of(one) for one in taken)
    given_up = a.retried(NOW + 100, "connection refused")
    await queue.dead(given_up, NOW + 300)
    await queue.dead(b, NOW + 301)
    await queue.dead(c, NOW + 302)
    for one in taken:
        await queue.finish(one)
    assert await queue.depth() == 0
    assert await queue.take(10) == []

    letters = await queue.dead_letters()
    newest_first = [(c.id, NOW + 302), (b.id, NOW + 301), (a.id, NOW + 300)]
    assert [(x.id, x.dead_at) for x in letters] == newest_first
    assert [x.job.id for x in letters] == [c.id, b.id, a.id]
    assert letters[2].job == dataclasses.replace(given_up, chunk="")  # attempts, last error
    assert [x.id for x in await queue.dead_letters("app1")] == [c.id, a.id]
    assert [x.id for x in await queue.dead_letters("app2")] == [b.id]
    assert await queue.dead_letters("app3") == []
    assert [x.id for x in await queue.dead_letters(limit=1)] == [c.id]
    assert [x.id for x in await queue.dead_letters("app1", limit=1)] == [c.id]

    waiting = chunk("room-4")
    await queue.push([waiting])
    replayed = await queue.replay(a.id, NOW + 400)
    fresh = dataclasses.replace(a, chunk="", created_at=NOW + 400)  # attempts 0, no error
    assert replayed == fresh
    assert (given_up.attempts, given_up.first_at) == (1, NOW + 100)
    assert await queue.replay(a.id, NOW + 401) is None  # not a dead letter any more
    assert await queue.replay("msg_unknown", NOW + 401) is None
    assert [x.id for x in await queue.dead_letters()] == [c.id, b.id]
    assert await queue.depth() == 2
    got = await queue.take(10)
    assert got[0] == waiting  # the replay is at the end of the queue
    assert len(got) == 2
    replay = got[1]
    assert (replay.apps, replay.tags, replay.size) == ("app1", JOB, 1)
    assert (replay.created_at, replay.states) == (NOW + 400, {})
    assert replay.id not in {one.id for one in chunks}
    (again,) = jobs_of(replay)
    assert again == dataclasses.replace(fresh, chunk=replay.id)  # the same id and body
    assert (again.id, again.body) == (a.id, a.body)

    other = await store.queue("node-b")  # the dead letters are in the store, not the object
    assert [x.id for x in await other.dead_letters()] == [c.id, b.id]


async def test_dead_letters_older_than_seven_days_go_at_the_next_dead(store: Store) -> None:
    """A dead letter is kept DEAD_LETTER_DAYS days (exactly that old: kept), then deleted by
    the next dead(): no longer listed nor replayable."""
    queue = await store.queue("node-a")
    await queue.push([chunk("room-1", "room-2", "room-3")])
    (taken,) = await queue.take(1)
    old, edge, new = jobs_of(taken)
    await queue.dead(old, NOW)
    await queue.dead(edge, NOW + 1)
    keep = DEAD_LETTER_DAYS * DAY
    assert [x.id for x in await queue.dead_letters()] == [edge.id, old.id]
    await queue.dead(new, NOW + 1 + keep)  # old is 7 days and 1 s old, edge exactly 7 days
    assert [x.id for x in await queue.dead_letters()] == [new.id, edge.id]
    assert await queue.replay(old.id, NOW + 2 + keep) is None


@pytest.mark.parametrize("node_after", ["node-a", "node-b"])
async def test_a_restart_loses_nothing(store: Store, node_after: str) -> None:
    """A node that stops with chunks taken and a state saved: after the take-over (by the
    same node id or another) every chunk comes back in push order, with the state."""
    before = await store.queue("node-a")
    chunks = sized(1, 2, 1, 3)
    for one in chunks:
        await before.push([one])
    taken = await before.take(2)
    first = jobs_of(taken[0])[0]
    await before.save(first.retried(NOW + 5, "502 Bad Gateway"))
    await before.close()  # the crash: nothing finished, nothing given back

    after = await store.queue(node_after)
    await after.take_over()
    got = await after.take(10)
    assert got == [
        with_states(chunks[0], {first.id: JobState(1, NOW + 6, "502 Bad Gateway", NOW + 5)}),
        *chunks[1:],
    ]
    assert await after.depth() == 7


async def test_any_text_round_trips_exactly(store: Store) -> None:
    """A chunk's entries (webhook events, a client event, a job with any bytes in its body)
    and a saved error come back exactly, quotes, ``?``, escapes and non-ASCII included."""
    queue = await store.queue("node-a")
    body = bytes(range(256)) * 3 + b"\x00\xff\x80 'quoted' \"double\" ?"
    odd = Job(
        id="msg_" + "ab" * 16,
        app_id="app-é",
        url="https://exämple.com/h?x=1&y=?",
        order_key="app-é|presence-ü ?",
        body=body,
        events=("member_added", "member_removed", "client_event"),
        headers=(("X-Name", "välue ✓"), ("X-Empty", "")),
        tenant=True,
        created_at=1_700_000_000.123456,
        attempts=3,
        next_at=1_700_000_004.5,
        last_error="HTTP 503: 'ünavailable' ?",
        first_at=1_700_000_001.25,
    )
    frame = (
        '{"event":"client-x","channel":"private-ü","data":"{\\"a\\":\\"\'?\\\\n\\u0000 ✓😀\\"}"}'
    )
    event = WebhookEvent("channel_occupied", "presence-é?'\"", user_id="ü\\u0000")
    made = Chunk.of(
        "0123456789abcdef0123",
        1_700_000_000.987654,
        [
            ("app-é", EVENT, event_json(event)),
            ("app-é", "123456.789012", frame),
            ("app-é", JOB, job_json.dumps(odd)),
        ],
    )
    await queue.push([made])
    (taken,) = await queue.take(10)
    assert taken == made
    jobs, gone = expand(taken, {}, lambda app_id: False)  # app-é is unknown: 2 events gone
    assert (jobs, gone) == ([dataclasses.replace(odd, chunk=made.id)], 2)
    await queue.dead(jobs[0], NOW)
    await queue.finish(taken)  # its last job ended
    assert (await queue.dead_letters())[0].job == odd
    replayed = await queue.replay(odd.id, NOW + 1)
    assert replayed is not None and replayed.body == body
    (replay,) = await queue.take(10)
    (job,) = jobs_of_any(replay)
    assert job == dataclasses.replace(replayed, chunk=replay.id)
    await queue.save(job.retried(NOW + 2, "HTTP 502 \x00 bad ü'?"))  # a NUL too
    await queue.take_over()
    got = await queue.take(10)
    assert got == [
        with_states(replay, {odd.id: JobState(1, NOW + 3, "HTTP 502 \x00 bad ü'?", NOW + 2)})
    ]


async def test_a_replayed_job_has_its_state_apart_from_its_dead_original(store: Store) -> None:
    """A dead letter replayed while its chunk still has jobs to post: the replayed job (same
    id, a chunk of its own) has its own state, which neither changes nor is changed by the
    original's (ended) in the chunk it died in; finishing that chunk leaves it."""
    queue = await store.queue("node-a")
    first = chunk("room-1", "room-2")
    await queue.push([first])
    (taken,) = await queue.take(1)
    dead, waiting = jobs_of(taken)
    await queue.dead(dead, NOW)  # its chunk is not finished: `waiting` is being retried
    await queue.save(waiting.retried(NOW, "timeout"))
    replayed = await queue.replay(dead.id, NOW + 1)
    assert replayed is not None
    (replay,) = await queue.take(1)
    (again,) = jobs_of(replay)
    assert (again.id, again.chunk) == (dead.id, replay.id)
    retried = again.retried(NOW + 2, "502 Bad Gateway")
    await queue.save(retried)

    await queue.take_over()
    got = await queue.take(10)
    assert got == [
        with_states(
            first,
            {dead.id: JobState(ended=True), waiting.id: JobState(1, NOW + 1, "timeout", NOW)},
        ),
        with_states(replay, {dead.id: JobState(1, NOW + 3, "502 Bad Gateway", NOW + 2)}),
    ]
    assert jobs_of(got[0]) == [waiting.retried(NOW, "timeout")]  # the dead one is not posted
    assert jobs_of(got[1]) == [retried]
    await queue.finish(got[0])
    await queue.take_over()
    assert await queue.take(10) == [got[1]]


async def test_start_moves_the_jobs_of_the_old_table_into_chunks(database: Store) -> None:
    """The rows an earlier build left in ``webhook_jobs`` (migration 3), waiting or taken,
    become one-JOB-entry chunks in their order when a DatabaseQueue starts, ahead of what is
    pushed after; their jobs are the rows'; the old table is emptied; starting again moves
    nothing more."""
    first = await database.queue("node-a")
    assert isinstance(first, DatabaseQueue)
    old = [
        Job(
            id="msg_" + "01" * 16,
            app_id="app1",
            url="https://a.example/hook",
            order_key="app1|https://a.example/hook|room-1",
            body=b'{"time_ms":1700000000000,"events":[]}',
            events=("channel_occupied",),
            created_at=NOW,
        ),
        Job(
            id="msg_" + "02" * 16,
            app_id="app2",
            url="https://b.example/hook?x=1",
            order_key="app2|https://b.example/hook?x=1",
            body=bytes(range(256)),
            events=("member_added", "client_event"),
            headers=(("X-Token", "t ✓"),),
            tenant=True,
            created_at=NOW + 1.5,
            attempts=2,
            next_at=NOW + 4,
            last_error="503 Service Unavailable",
        ),
    ]
    for job, taken_by in zip(old, [None, "node-old"], strict=True):
        await first.db.execute(
            "INSERT INTO webhook_jobs (id, app_id, url, order_key, body, events, headers,"
            " tenant, created_at, attempts, next_at, last_error, taken_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            job.id,
            job.app_id,
            job.url,
            job.order_key,
            job.body,
            '["' + '", "'.join(job.events) + '"]',
            '[["X-Token", "t \\u2713"]]' if job.headers else "[]",
            job.tenant,
            job.created_at,
            job.attempts,
            job.next_at,
            job.last_error,
            taken_by,
        )

    upgraded = await database.queue("node-b")  # the new build starts
    assert isinstance(upgraded, DatabaseQueue)
    rows = await upgraded.db.fetch("SELECT count(*) AS n FROM webhook_jobs")
    assert int(rows[0]["n"]) == 0
    pushed = chunk("room-9")
    await upgraded.push([pushed])
    assert await upgraded.depth() == 3
    await database.queue("node-c")  # starting again: nothing to move
    assert await upgraded.depth() == 3

    got = await upgraded.take(10)
    assert got == [
        Chunk.of(f"v3{seq:018x}", job.created_at, [(job.app_id, JOB, job_json.dumps(job))])
        for seq, job in enumerate(old, 1)
    ] + [pushed]
    assert [jobs_of_any(one) for one in got[:2]] == [
        [dataclasses.replace(job, chunk=one.id)] for job, one in zip(old, got, strict=False)
    ]
    await upgraded.finish(got[0])
    assert await upgraded.depth() == 2


async def test_an_old_stream_entry_is_a_chunk_of_its_job(redis_store: Store) -> None:
    """An entry an earlier build added to the stream (one field ``job``) is taken as a chunk
    of one JOB entry, in stream order, named after the entry; finishing it deletes it. The
    depth counter never counted it (it is the entries pushed since the upgrade)."""
    assert redis_store.service is not None
    queue = await redis_store.queue("node-a")
    assert isinstance(queue, RedisQueue)
    client = redis_client(redis_store.service.url)
    redis_store.closes(client.aclose)
    old = Job(
        id="msg_" + "03" * 16,
        app_id="app1",
        url="https://a.example/hook",
        order_key="app1|https://a.example/hook|room-1",
        body=bytes(range(256)),
        events=("channel_occupied",),
        headers=(("X-Token", "t1"),),
        created_at=NOW,
        attempts=1,
        next_at=NOW + 2,
        last_error="timeout",
    )
    entry_id = await bounded(client.xadd(queue.stream, {"job": job_json.dumps(old)}))
    assert isinstance(entry_id, bytes)
    pushed = chunk("room-2", "room-3")
    await queue.push([pushed])
    assert await queue.depth() == 2

    got = await queue.take(10)
    name = "v3-" + entry_id.decode().replace("-", "")
    assert got == [
        Chunk.of(name, NOW, [("app1", JOB, job_json.dumps(old))]),
        pushed,
    ]
    (job,) = jobs_of_any(got[0])
    assert job == dataclasses.replace(old, chunk=name)
    await queue.save(job.retried(NOW + 3, "502 Bad Gateway"))
    await queue.finish(got[0])
    assert await bounded(client.xlen(queue.stream)) == 1
    assert await bounded(client.exists(queue.state_prefix + name)) == 0
    assert await queue.depth() == 2
    other = await redis_store.queue("node-b")
    await other.take_over()
    assert await other.take(10) == [pushed]


async def test_unavailable_while_the_store_is_down(durable: Store) -> None:
    """Every operation raises Unavailable while the store cannot be reached (SQLite: its
    writes while another process holds the lock), within its timeout; when the store is back
    the queue works again with what it kept."""
    store = durable
    queue = await store.queue("node-a")
    pushed = [chunk("room-1"), chunk("room-2", "room-3")]
    for one in pushed:
        await queue.push([one])
    taken = await queue.take(1)
    (job,) = jobs_of(taken[0])
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "push": lambda: queue.push([chunk("room-4")]),
        "take": lambda: queue.take(10),
        "save": lambda: queue.save(job.retried(NOW, "timeout")),
        "ended": lambda: queue.ended(job),
        "dead": lambda: queue.dead(job, NOW),
        "finish": lambda: queue.finish(taken[0]),
        "replay": lambda: queue.replay(job.id, NOW),
        "take_over": queue.take_over,
        "depth": queue.depth,
        "dead_letters": queue.dead_letters,
    }
    if store.service is None:
        # SQLite: another process holds the write lock longer than the busy timeout (0.5 s).
        # In WAL mode readers are never blocked, so the reads (depth, dead_letters) still work.
        locker = sqlite3.connect(store.path, timeout=0, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            writes = ("push", "take", "save", "ended", "dead", "finish", "replay", "take_over")
            for name in writes:
                with pytest.raises(Unavailable):
                    await bounded(operations[name]())
            assert await queue.depth() == 3
            assert await queue.dead_letters() == []
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    else:
        store.service.stop()
        try:
            for operation in operations.values():
                with pytest.raises(Unavailable):
                    await bounded(operation())
        finally:
            store.service.start()
    # back: the queue works again, with what it kept
    late = chunk("room-9")
    deadline = asyncio.get_running_loop().time() + BOUND
    while True:
        try:
            await bounded(queue.push([late]))
            break
        except Unavailable:
            assert asyncio.get_running_loop().time() < deadline, "the store did not come back"
            await asyncio.sleep(0.1)
    if store.kind == "redis":  # it ran without persistence: the stream started over
        assert await queue.take(10) == [late]
        assert await queue.depth() == 1
    else:
        assert await queue.take(10) == [pushed[1], late]
        assert await queue.depth() == 4
