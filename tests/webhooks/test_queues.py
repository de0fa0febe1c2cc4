"""The JobQueue contract (ressonance.webhooks.base), the same tests for the durable queues:
DatabaseQueue on SQLite (a file in ``tmp_path``) and on a private PostgreSQL, RedisQueue on a
private redis-server (tests/support/services.py). Each test gets a fresh store (a new SQLite
file, a new PostgreSQL database, a new Redis key prefix); each queue object a connection of its
own, as separate nodes or a restarted one would have."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from ressonance.scaling.redis import client as redis_client
from ressonance.storage.base import Database, Unavailable
from ressonance.storage.postgres import PostgresDatabase
from ressonance.storage.sqlite import SqliteDatabase
from ressonance.webhooks.base import DEAD_LETTER_DAYS, Job, JobQueue
from ressonance.webhooks.queue_db import DatabaseQueue
from ressonance.webhooks.queue_redis import RedisQueue
from tests.support.services import PostgresService, Service, postgres_server, redis_server

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]
BOUND = 10.0  # seconds, the bound on any one step
NOW = 1_700_000_000.0
DAY = 86_400.0


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
        self.service: Service | None = None  # the server to stop (None: SQLite)
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
        store.closes(db.close)
        return DatabaseQueue(db, node_id)

    store = Store(kind, open_queue)
    return store


@pytest_asyncio.fixture(params=["sqlite", "postgres", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        path = str(tmp_path / "store" / "ressonance.db")
        made = await _database_store("sqlite", lambda: SqliteDatabase(path, timeout=0.5))
        made.path = path
    elif request.param == "postgres":
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
    else:
        server: Service = request.getfixturevalue("redis")
        prefix = f"t{uuid.uuid4().hex[:12]}"

        async def open_redis(node_id: str) -> JobQueue:
            return RedisQueue(redis_client(server.url), prefix, node_id, timeout=2.0)

        made = Store("redis", open_redis)
        made.service = server
    try:
        yield made
    finally:
        await made.close()


def job(n: int, app_id: str = "app1", **changes: object) -> Job:
    made = Job(
        id=f"msg_{uuid.uuid4().hex}",
        app_id=app_id,
        url=f"https://example.com/hook/{n}",
        order_key=f"{app_id}:channel-{n % 2}",
        body=b'{"time_ms":%d,"events":[]}' % n,
        events=("channel_occupied",),
        headers=(("X-Number", str(n)),),
        created_at=NOW + n,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def ids(jobs: list[Job]) -> list[str]:
    return [one.id for one in jobs]


async def bounded(operation: Awaitable[object]) -> object:
    async with asyncio.timeout(BOUND):
        return await operation


async def test_take_hands_jobs_out_in_push_order_up_to_the_limit(store: Store) -> None:
    queue = await store.queue("node-a")
    first, second = [job(1), job(2), job(3)], [job(4), job(5)]
    await queue.push(first)
    await queue.push([])
    await queue.push(second)
    assert await queue.take(0) == []
    assert await queue.take(2) == first[:2]
    assert await queue.take(10) == first[2:] + second
    assert await queue.take(10) == []
    third = [job(6)]
    await queue.push(third)
    assert await queue.take(10) == third


async def test_a_taken_job_is_not_taken_again_by_any_queue(store: Store) -> None:
    a = await store.queue("node-a")
    b = await store.queue("node-b")
    jobs = [job(n) for n in range(5)]
    await a.push(jobs)
    assert ids(await a.take(2)) == ids(jobs[:2])
    assert ids(await b.take(1)) == ids(jobs[2:3])
    again = await store.queue("node-a")  # the same node id on another connection
    assert ids(await again.take(10)) == ids(jobs[3:])
    for queue in (a, b, again):
        assert await queue.take(10) == []
    assert await a.depth() == 5


async def test_takes_at_the_same_time_share_the_jobs_out(store: Store) -> None:
    queues = [await store.queue(f"node-{n}") for n in range(3)]
    jobs = [job(n) for n in range(30)]
    await queues[0].push(jobs)
    results: list[list[Job]] = []
    for _ in range(4):  # 3 queues x 4 jobs a round: 12, 12, 6, then nothing
        async with asyncio.timeout(BOUND):
            results += await asyncio.gather(*(queue.take(4) for queue in queues))
    taken = [one for result in results for one in result]
    assert sorted(ids(taken)) == sorted(ids(jobs))  # each job once, none lost
    assert results[-3:] == [[], [], []]
    order = ids(jobs)
    for result in results:
        assert ids(result) == sorted(ids(result), key=order.index)  # each in push order


async def test_take_over_by_another_node_returns_the_saved_retry_state(store: Store) -> None:
    a = await store.queue("node-a")
    jobs = [job(1), job(2), job(3)]
    await a.push(jobs)
    taken = await a.take(2)
    retried = taken[1].retried(NOW + 10, "503 Service Unavailable").retried(NOW + 12, "timeout")
    await a.save(retried)
    assert (retried.attempts, retried.next_at) == (2, NOW + 14)

    b = await store.queue("node-b")
    assert await b.take(10) == [jobs[2]]  # before the take-over: only the one never taken
    await b.take_over()
    assert await b.take(10) == [jobs[0], retried, jobs[2]]  # push order, state as saved
    assert await a.take(10) == []
    for one in (jobs[0], retried, jobs[2]):
        await b.done(one)
    assert await b.depth() == 0
    await b.take_over()
    assert await b.take(10) == []


async def test_done_forgets_the_job(store: Store) -> None:
    queue = await store.queue("node-a")
    jobs = [job(1), job(2), job(3)]
    await queue.push(jobs)
    taken = await queue.take(3)
    await queue.done(taken[1])
    assert await queue.depth() == 2
    await queue.take_over()
    assert await queue.take(10) == [jobs[0], jobs[2]]


async def test_dead_letters_newest_first_by_app_and_replay_at_the_end(store: Store) -> None:
    queue = await store.queue("node-a")
    a, b, c, d = job(1, "app1"), job(2, "app2"), job(3, "app1"), job(4, "app1")
    await queue.push([a, b, c])
    taken = await queue.take(3)
    given_up = taken[0].retried(NOW + 100, "connection refused")
    await queue.dead(given_up, NOW + 300)
    await queue.dead(taken[1], NOW + 301)
    await queue.dead(taken[2], NOW + 302)
    assert await queue.depth() == 0
    assert await queue.take(10) == []

    letters = await queue.dead_letters()
    newest_first = [(c.id, NOW + 302), (b.id, NOW + 301), (a.id, NOW + 300)]
    assert [(x.id, x.dead_at) for x in letters] == newest_first
    assert letters[2].job == given_up  # with its attempts and last error
    assert ids([x.job for x in await queue.dead_letters("app1")]) == [c.id, a.id]
    assert ids([x.job for x in await queue.dead_letters("app2")]) == [b.id]
    assert await queue.dead_letters("app3") == []
    assert ids([x.job for x in await queue.dead_letters(limit=1)]) == [c.id]
    assert ids([x.job for x in await queue.dead_letters("app1", limit=1)]) == [c.id]

    await queue.push([d])
    replayed = await queue.replay(a.id, NOW + 400)
    fresh = dataclasses.replace(a, attempts=0, next_at=0.0, last_error="", created_at=NOW + 400)
    assert replayed == fresh
    assert await queue.replay(a.id, NOW + 401) is None  # not a dead letter any more
    assert await queue.replay("msg_unknown", NOW + 401) is None
    assert ids([x.job for x in await queue.dead_letters()]) == [c.id, b.id]
    assert await queue.depth() == 2
    assert await queue.take(10) == [d, fresh]  # the end of the queue, the same id

    other = await store.queue("node-b")  # the dead letters are in the store, not the object
    assert ids([x.job for x in await other.dead_letters()]) == [c.id, b.id]


async def test_dead_letters_older_than_seven_days_go_at_the_next_dead(store: Store) -> None:
    queue = await store.queue("node-a")
    old, edge, new = job(1), job(2), job(3)
    await queue.push([old, edge, new])
    await queue.take(3)
    await queue.dead(old, NOW)
    await queue.dead(edge, NOW + 1)
    keep = DEAD_LETTER_DAYS * DAY
    assert ids([x.job for x in await queue.dead_letters()]) == [edge.id, old.id]
    await queue.dead(new, NOW + 1 + keep)  # old is 7 days and 1 s old, edge exactly 7 days
    assert ids([x.job for x in await queue.dead_letters()]) == [new.id, edge.id]
    assert await queue.replay(old.id, NOW + 2 + keep) is None


async def test_depth_counts_waiting_and_taken_jobs(store: Store) -> None:
    queue = await store.queue("node-a")
    assert await queue.depth() == 0
    await queue.push([job(1), job(2), job(3)])
    assert await queue.depth() == 3
    taken = await queue.take(2)
    assert await queue.depth() == 3
    await queue.done(taken[0])
    assert await queue.depth() == 2
    await queue.dead(taken[1], NOW)
    assert await queue.depth() == 1


@pytest.mark.parametrize("node_after", ["node-a", "node-b"])
async def test_a_restart_loses_nothing(store: Store, node_after: str) -> None:
    before = await store.queue("node-a")
    jobs = [job(n) for n in range(4)]
    await before.push(jobs)
    taken = await before.take(2)
    await before.save(taken[0].retried(NOW + 5, "502 Bad Gateway"))
    await before.close()  # the crash: nothing done, nothing given back

    after = await store.queue(node_after)
    await after.take_over()
    got = await after.take(10)
    assert ids(got) == ids(jobs)
    assert (got[0].attempts, got[0].last_error) == (1, "502 Bad Gateway")
    assert got[1:] == jobs[1:]
    assert await after.depth() == 4


async def test_any_bytes_and_text_round_trip_exactly(store: Store) -> None:
    queue = await store.queue("node-a")
    body = bytes(range(256)) * 3 + b"\x00\xff\x80 'quoted' \"double\" ?"
    odd = job(
        1,
        "app-é",
        body=body,
        url="https://exämple.com/h?x=1&y=?",
        order_key="app-é:presence-ü ?",
        events=("member_added", "member_removed", "client_event"),
        headers=(("X-Name", "välue ✓"), ("X-Empty", "")),
        tenant=True,
        created_at=1_700_000_000.123456,
        attempts=3,
        next_at=1_700_000_004.5,
        last_error="HTTP 503: 'ünavailable' ?",
    )
    empty = job(2, body=b"", events=(), headers=())
    await queue.push([odd, empty])
    assert await queue.take(10) == [odd, empty]
    await queue.dead(odd, NOW)
    assert (await queue.dead_letters())[0].job == odd
    replayed = await queue.replay(odd.id, NOW + 1)
    assert replayed is not None and replayed.body == body
    assert await queue.take(10) == [replayed]
    # PostgreSQL text holds no NUL: one in an error is kept as U+FFFD, and never fails a save
    await queue.save(replayed.retried(NOW + 2, "HTTP 502 \x00 bad"))
    await queue.take_over()
    empty_again, saved = await queue.take(10)
    assert (empty_again, saved.id) == (empty, odd.id)
    assert saved.last_error.replace("\x00", "\ufffd") == "HTTP 502 \ufffd bad"


async def test_unavailable_while_the_store_is_down(store: Store) -> None:
    queue = await store.queue("node-a")
    pushed = [job(1), job(2)]
    await queue.push(pushed)
    taken = await queue.take(1)
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "push": lambda: queue.push([job(3)]),
        "take": lambda: queue.take(10),
        "save": lambda: queue.save(taken[0].retried(NOW, "timeout")),
        "done": lambda: queue.done(taken[0]),
        "dead": lambda: queue.dead(taken[0], NOW),
        "replay": lambda: queue.replay(taken[0].id, NOW),
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
            for name in ("push", "take", "save", "done", "dead", "replay", "take_over"):
                with pytest.raises(Unavailable):
                    await bounded(operations[name]())
            assert await queue.depth() == 2
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
    late = job(9)
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
    else:
        assert await queue.take(10) == [pushed[1], late]
