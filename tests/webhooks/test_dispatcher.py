"""Dispatcher (webhooks/dispatcher.py) over a MemoryQueue, with a scripted Poster and virtual
time: chunks expanded into jobs, order per order_key across chunks, a chunk finished with its
last job and the others marked ended, back-off and dead letters (the 300 s counted from the
first failure), final answers, the concurrency bound, signing during a rotation, apps that are
gone, the hooks, and leadership (a take-over posts only the jobs that did not end)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pusher
import pytest

from ressonance.models import App, Webhook, WebhookEvent
from ressonance.webhooks.base import EVENT, GIVE_UP_AFTER, Chunk, Job
from ressonance.webhooks.dispatcher import APP_GONE, Dispatcher
from ressonance.webhooks.jobs import event_json, expand
from ressonance.webhooks.memory import MemoryQueue
from ressonance.webhooks.recorder import Recorder
from ressonance.webhooks.sender import Outcome, Sender
from tests.support.receiver import Receiver
from tests.webhooks.virtual_time import WALL_START, VirtualClock, virtual_time

URL = "https://receiver.example/hook"
HOOK = Webhook(URL, ("member_added", "channel_occupied"))
APP = App(id="app1", key="k1", secret="s1", webhooks=(HOOK,))
DELIVERED = Outcome("delivered", "200")


class Apps:
    """An AppStore whose apps a test changes."""

    def __init__(self, *apps: App) -> None:
        self.apps = {app.id: app for app in apps}

    async def by_key(self, key: str) -> App | None:
        return next((app for app in self.apps.values() if key in app.keys), None)

    async def by_id(self, app_id: str) -> App | None:
        return self.apps.get(app_id)

    async def all(self) -> list[App]:
        return list(self.apps.values())


class Queue(MemoryQueue):
    """A MemoryQueue that records what the dispatcher tells it: (save|ended|dead, job id) and
    (finish, chunk id)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    async def save(self, job: Job) -> None:
        self.calls.append(("save", job.id))
        await super().save(job)

    async def ended(self, job: Job) -> None:
        self.calls.append(("ended", job.id))
        await super().ended(job)

    async def dead(self, job: Job, now: float) -> None:
        self.calls.append(("dead", job.id))
        await super().dead(job, now)

    async def finish(self, chunk: Chunk) -> None:
        self.calls.append(("finish", chunk.id))
        await super().finish(chunk)


class Poster:
    """Answers each job's attempts from a script (then ``delivered``); records every call."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.script: dict[str, list[Outcome]] = defaultdict(list)  # job id → answers
        self.calls: list[tuple[float, str, str, str, bool]] = []  # (t, job, key, secret, private)
        self.posted: list[Job] = []  # the job of each call
        self.gate: asyncio.Event | None = None  # set: attempts wait for it
        self.now = 0  # attempts under way
        self.most = 0
        self.most_per_key: dict[str, int] = defaultdict(int)
        self._per_key: dict[str, int] = defaultdict(int)

    async def post(self, job: Job, key: str, secret: str, allow_private: bool) -> Outcome:
        self.calls.append((self.clock.elapsed(), job.id, key, secret, allow_private))
        self.posted.append(job)
        self.now += 1
        self._per_key[job.order_key] += 1
        self.most = max(self.most, self.now)
        self.most_per_key[job.order_key] = max(
            self.most_per_key[job.order_key], self._per_key[job.order_key]
        )
        try:
            if self.gate is not None:
                await self.gate.wait()
            answers = self.script[job.id]
            return answers.pop(0) if answers else DELIVERED
        finally:
            self.now -= 1
            self._per_key[job.order_key] -= 1

    def times(self, job: Job) -> list[float]:
        return [t for t, job_id, *_ in self.calls if job_id == job.id]

    def order(self) -> list[str]:
        return [job_id for _, job_id, *_ in self.calls]


def chunk_of(
    clock: VirtualClock, *channels: str, app: App = APP, event: str = "member_added"
) -> Chunk:
    """A chunk of one ``event`` per channel of ``app``, cut now."""
    return mixed(clock, *((app, event, channel) for channel in channels))


def mixed(clock: VirtualClock, *events: tuple[App, str, str]) -> Chunk:
    """A chunk of (app, event name, channel) events, cut now."""
    entries = [(app.id, EVENT, event_json(WebhookEvent(name, ch))) for app, name, ch in events]
    return Chunk.of(uuid.uuid4().hex[:20], clock.wall(), entries)


def jobs_of(chunk: Chunk, *apps: App) -> list[Job]:
    """The jobs the dispatcher makes of ``chunk`` (expand is tested in test_jobs.py)."""
    jobs, gone = expand(chunk, {app.id: app for app in apps or (APP,)}, lambda app_id: False)
    assert gone == 0
    return jobs


@contextlib.asynccontextmanager
async def running(dispatcher: Dispatcher) -> AsyncIterator[Dispatcher]:
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


def dispatcher_for(
    queue: MemoryQueue, poster: Poster, apps: Apps, clock: VirtualClock, **options: object
) -> Dispatcher:
    return Dispatcher(queue, poster, apps, False, lambda app_id: False, clock.wall, **options)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_failing_job_holds_back_its_order_key_only_across_chunks() -> None:
    """The jobs of every chunk taken go into one FIFO line per order_key: a retried job holds
    back the later job of its channel (from the next chunk), not the other channel's. A job
    that ends while others of its chunk remain is marked ended; the last one finishes it."""
    queue = Queue()
    with virtual_time() as clock:
        poster = Poster(clock)
        first = chunk_of(clock, "presence-a", "presence-b")
        second = chunk_of(clock, "presence-a")
        a1, b1 = jobs_of(first)
        (a2,) = jobs_of(second)
        poster.script[a1.id] = [Outcome("retry", "503"), Outcome("retry", "connection refused")]
        await queue.push([first])
        await queue.push([second])
        dispatcher = dispatcher_for(queue, poster, Apps(APP), clock)
        async with running(dispatcher):
            await asyncio.sleep(10)
    assert poster.times(a1) == pytest.approx([0, 1, 3], abs=0.01)
    assert poster.times(b1) == pytest.approx([0], abs=0.01)
    assert poster.times(a2) == pytest.approx([3], abs=0.01)  # only once a1 got through
    assert poster.order() == [a1.id, b1.id, a1.id, a1.id, a2.id]
    assert queue.calls == [
        ("save", a1.id),
        ("ended", b1.id),
        ("save", a1.id),
        ("finish", first.id),
        ("finish", second.id),
    ]
    assert await queue.depth() == 0 and dispatcher.held == 0
    assert dispatcher.outcomes == {
        ("app1", "member_added", "retried"): 2,
        ("app1", "member_added", "delivered"): 3,
    }


@pytest.mark.asyncio
async def test_back_off_doubles_to_60_s_and_the_job_dies_after_300_s() -> None:
    """Retries wait 1, 2, 4 ... 60 s; each is saved (a next leader starts from the saved
    state, posting it at its next_at); 300 s after its first failure the job is a dead letter
    and the next job of its channel goes."""
    queue = Queue()
    seen: list[tuple[str, str, int]] = []

    def observe(attempted: Job, what: str, why: str) -> None:
        seen.append((what, why, attempted.attempts))

    with virtual_time() as clock:
        poster = Poster(clock)
        chunk = chunk_of(clock, "presence-a", "presence-a", event="channel_occupied")
        down, later = jobs_of(chunk)
        poster.script[down.id] = [Outcome("retry", "503")] * 100
        await queue.push([chunk])
        first = dispatcher_for(queue, poster, Apps(APP), clock, observe=observe)
        async with running(first):
            await asyncio.sleep(GIVE_UP_AFTER - 1)
        # what the queue kept of the retries: a next leader starts from there
        await queue.take_over()
        (saved,) = await queue.take(10)
        assert saved.id == chunk.id and list(saved.states) == [down.id]
        state = saved.states[down.id]
        assert (state.attempts, state.last_error, state.ended) == (10, "503", False)
        assert state.next_at == pytest.approx(WALL_START + 303, abs=0.01)
        assert state.first_at == pytest.approx(WALL_START, abs=0.01)
        await queue.take_over()
        second = dispatcher_for(queue, poster, Apps(APP), clock, observe=observe)
        async with running(second):
            await asyncio.sleep(10)
    times = poster.times(down)
    assert times == pytest.approx([0, 1, 3, 7, 15, 31, 63, 123, 183, 243, 303], abs=0.01)
    assert poster.times(later) == pytest.approx([303], abs=0.01)  # after the first gave up
    (letter,) = await queue.dead_letters()
    assert letter.id == down.id
    assert (letter.job.attempts, letter.job.last_error, letter.job.body) == (11, "503", down.body)
    assert letter.dead_at == pytest.approx(WALL_START + 303, abs=0.01)
    assert seen == [("retried", "503", n) for n in range(1, 11)] + [
        ("dead", "503", 11),
        ("delivered", "200", 1),
    ]
    assert queue.calls == [("save", down.id)] * 10 + [("dead", down.id), ("finish", chunk.id)]
    assert first.outcomes == {("app1", "channel_occupied", "retried"): 10}
    assert second.outcomes == {
        ("app1", "channel_occupied", "dead"): 1,
        ("app1", "channel_occupied", "delivered"): 1,
    }
    assert second.failed == 0 and await second.depth() == 0


@pytest.mark.asyncio
async def test_the_300_s_count_from_the_first_failure_not_from_the_events() -> None:
    """A chunk that waited 400 s in the queue (no leader) still gets its five minutes of
    retries: the first attempt at 400 s, the dead letter at 703 s."""
    queue = Queue()
    latencies: list[float] = []
    with virtual_time() as clock:
        poster = Poster(clock)
        chunk = chunk_of(clock, "presence-a", "presence-b")
        waited, delivered = jobs_of(chunk)
        poster.script[waited.id] = [Outcome("retry", "503")] * 100
        await queue.push([chunk])
        await asyncio.sleep(GIVE_UP_AFTER + 100)
        dispatcher = dispatcher_for(queue, poster, Apps(APP), clock, latency=latencies.append)
        async with running(dispatcher):
            await asyncio.sleep(GIVE_UP_AFTER + 10)
    assert poster.times(waited) == pytest.approx(
        [400, 401, 403, 407, 415, 431, 463, 523, 583, 643, 703], abs=0.01
    )
    (letter,) = await queue.dead_letters()
    assert (letter.id, letter.job.attempts) == (waited.id, 11)
    assert letter.dead_at == pytest.approx(WALL_START + 703, abs=0.01)
    assert letter.job.first_at == pytest.approx(WALL_START + 400, abs=0.01)
    assert letter.job.created_at == WALL_START
    assert latencies == pytest.approx([400], abs=0.01)  # from the chunk's cut to delivery
    assert queue.calls == [("save", waited.id), ("ended", delivered.id)] + [
        ("save", waited.id)
    ] * 9 + [("dead", waited.id), ("finish", chunk.id)]


@pytest.mark.asyncio
async def test_a_final_answer_is_a_dead_letter_at_once_and_a_replay_is_posted_again() -> None:
    """A final answer (404) makes a dead letter at its first attempt while the next job of
    the channel goes on; replayed, the job comes back in a chunk of its own and is posted
    with the same id and body."""
    queue = Queue()
    latencies: list[float] = []
    with virtual_time() as clock:
        poster = Poster(clock)
        chunk = chunk_of(clock, "presence-a", "presence-a")
        refused, after = jobs_of(chunk)
        poster.script[refused.id] = [Outcome("final", "404")]
        poster.script[after.id] = [Outcome("retry", "502")]
        await queue.push([chunk])
        dispatcher = dispatcher_for(queue, poster, Apps(APP), clock, latency=latencies.append)
        async with running(dispatcher):
            await asyncio.sleep(5)
        assert poster.times(refused) == pytest.approx([0], abs=0.01)
        assert poster.times(after) == pytest.approx([0, 1], abs=0.01)
        (letter,) = await queue.dead_letters(app_id="app1")
        assert (letter.id, letter.job.attempts, letter.job.last_error) == (refused.id, 1, "404")
        assert queue.calls == [
            ("dead", refused.id),
            ("save", after.id),
            ("finish", chunk.id),
        ]
        assert dispatcher.failed == 1
        assert dispatcher.outcomes[("app1", "member_added", "dead")] == 1
        assert latencies == pytest.approx([1], abs=0.01)  # from the chunk's cut to delivery
        replayed = await queue.replay(refused.id, clock.wall())
        assert replayed is not None and replayed.id == refused.id and replayed.attempts == 0
        assert await queue.dead_letters() == [] and await queue.depth() == 1
        async with running(dispatcher):
            await asyncio.sleep(1)
    assert poster.times(refused) == pytest.approx([0, 5], abs=0.01)
    again = poster.posted[-1]
    assert (again.id, again.body, again.attempts, again.app_id) == (
        refused.id,
        refused.body,
        0,
        "app1",
    )
    assert queue.calls[3:] == [("finish", again.chunk)] and again.chunk != chunk.id
    assert await queue.depth() == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("concurrency", [4, None])  # None: the default, 16
async def test_at_most_concurrency_attempts_and_one_per_channel(concurrency: int | None) -> None:
    """At most ``concurrency`` attempts at once, one per order_key, the jobs of one key in
    entry order; the chunk is finished once, when its last job ends."""
    bound = concurrency or 16
    queue = Queue()
    with virtual_time() as clock:
        poster = Poster(clock)
        poster.gate = asyncio.Event()
        others = [f"presence-{n}" for n in range(40)]
        chunk = chunk_of(clock, "presence-same", *others, *["presence-same"] * 4)
        jobs = jobs_of(chunk)
        same = [j for j in jobs if j.order_key == f"app1|{URL}|presence-same"]
        await queue.push([chunk])
        options = {} if concurrency is None else {"concurrency": concurrency}
        dispatcher = dispatcher_for(queue, poster, Apps(APP), clock, **options)
        async with running(dispatcher):
            await asyncio.sleep(1)
            assert (poster.now, dispatcher.in_flight, dispatcher.held) == (bound, bound, 45)
            poster.gate.set()
            await asyncio.sleep(1)
    assert len(same) == 5 and poster.most == bound
    assert poster.most_per_key[f"app1|{URL}|presence-same"] == 1
    assert sorted(poster.order()) == sorted(j.id for j in jobs)
    assert [i for i in poster.order() if i in {j.id for j in same}] == [j.id for j in same]
    assert [what for what, _ in queue.calls] == ["ended"] * 44 + ["finish"]
    assert queue.calls[-1] == ("finish", chunk.id)
    assert await queue.depth() == 0 and dispatcher.held == 0


@pytest.mark.asyncio
async def test_signed_with_the_oldest_active_pair_during_a_rotation() -> None:
    """Each attempt is signed with the app's oldest active pair as it is at that attempt."""
    rotating = App(
        id="app1", key="k3", secret="s3", previous=(("k2", "s2"), ("k1", "s1")), webhooks=(HOOK,)
    )
    apps = Apps(rotating)
    queue = Queue()
    with virtual_time() as clock:
        poster = Poster(clock)
        chunk = chunk_of(clock, "presence-a")
        (first,) = jobs_of(chunk)
        poster.script[first.id] = [Outcome("retry", "503")]
        await queue.push([chunk])
        async with running(dispatcher_for(queue, poster, apps, clock)):
            await asyncio.sleep(0.5)
            apps.apps["app1"] = App(id="app1", key="k3", secret="s3", webhooks=(HOOK,))
            await asyncio.sleep(2)
    assert [(key, secret) for _, _, key, secret, _ in poster.calls] == [
        ("k1", "s1"),
        ("k3", "s3"),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("allow_private", [False, True])
async def test_a_tenant_job_may_reach_private_targets_only_when_allowed(
    allow_private: bool,
) -> None:
    """is_tenant (after allow_private) marks the jobs of an app whose webhooks a tenant set:
    they are posted with private targets refused unless allow_private; the operator's own
    always may."""
    tenant = App(id="app2", key="k2", secret="s2", webhooks=(HOOK,))
    queue = Queue()
    with virtual_time() as clock:
        poster = Poster(clock)
        chunk = mixed(clock, (APP, "member_added", "presence-a"), (tenant, "member_added", "b"))
        own, theirs = jobs_of(chunk, APP, tenant)
        await queue.push([chunk])
        dispatcher = Dispatcher(
            queue, poster, Apps(APP, tenant), allow_private, "app2".__eq__, clock.wall
        )
        async with running(dispatcher):
            await asyncio.sleep(1)
    assert [(job_id, private) for _, job_id, _, _, private in poster.calls] == [
        (own.id, True),
        (theirs.id, allow_private),
    ]
    assert [job.tenant for job in poster.posted] == [False, True]


@pytest.mark.asyncio
async def test_the_events_of_an_app_gone_before_its_chunk_is_taken_are_dropped() -> None:
    """An app deleted or disabled before its chunk is taken: its events make no job, no dead
    letter, and are counted in ``gone``; a chunk of such events only is finished at once."""
    queue = Queue()
    disabled = App(id="app2", key="k2", secret="s2", webhooks=(HOOK,), enabled=False)
    deleted = App(id="app3", key="k3", secret="s3", webhooks=(HOOK,))
    with virtual_time() as clock:
        poster = Poster(clock)
        both = mixed(
            clock,
            (disabled, "member_added", "presence-a"),
            (deleted, "member_added", "presence-a"),
            (APP, "member_added", "presence-a"),
        )
        (kept,) = expand(both, {"app1": APP}, lambda app_id: False)[0]
        only_gone = chunk_of(clock, "presence-a", "presence-b", app=deleted)
        await queue.push([both])
        await queue.push([only_gone])
        dispatcher = dispatcher_for(queue, poster, Apps(APP, disabled), clock)
        async with running(dispatcher):
            await asyncio.sleep(2)
    assert poster.order() == [kept.id]
    assert dispatcher.gone == 4 and dispatcher.failed == 0
    assert await queue.dead_letters() == [] and await queue.depth() == 0
    assert queue.calls == [("finish", only_gone.id), ("finish", both.id)]


@pytest.mark.asyncio
async def test_the_job_of_an_app_gone_or_disabled_after_it_was_taken_is_a_dead_letter() -> None:
    """An app deleted or disabled while its job waits for a retry: the next attempt is not
    made, the job is a dead letter ("app gone") the operator can see."""
    queue = Queue()
    second = App(id="app2", key="k2", secret="s2", webhooks=(HOOK,))
    apps = Apps(APP, second)
    with virtual_time() as clock:
        poster = Poster(clock)
        chunk = mixed(clock, (APP, "member_added", "a"), (second, "member_added", "b"))
        deleted, disabled = jobs_of(chunk, APP, second)
        poster.script[deleted.id] = [Outcome("retry", "503")]
        poster.script[disabled.id] = [Outcome("retry", "503")]
        await queue.push([chunk])
        dispatcher = dispatcher_for(queue, poster, apps, clock)
        async with running(dispatcher):
            await asyncio.sleep(0.5)
            del apps.apps["app1"]
            apps.apps["app2"] = App(id="app2", key="k2", secret="s2", enabled=False)
            await asyncio.sleep(2)
    assert poster.order() == [deleted.id, disabled.id]
    letters = {letter.id: letter.job for letter in await queue.dead_letters()}
    assert {i: (j.app_id, j.last_error, j.attempts) for i, j in letters.items()} == {
        deleted.id: ("app1", APP_GONE, 2),
        disabled.id: ("app2", APP_GONE, 2),
    }
    assert queue.calls == [
        ("save", deleted.id),
        ("save", disabled.id),
        ("dead", deleted.id),
        ("dead", disabled.id),
        ("finish", chunk.id),
    ]
    assert dispatcher.failed == 2 and dispatcher.gone == 0 and await queue.depth() == 0


@pytest.mark.asyncio
async def test_a_new_leader_posts_only_the_jobs_that_did_not_end_and_stops_when_told() -> None:
    """A leader that stops leaves its chunk taken with two jobs ended and one waiting for a
    retry; the next leader takes it over and posts that one only, at its saved next_at, then
    polls new chunks every 0.5 s until it stops leading."""
    queue = Queue()
    with virtual_time() as clock:
        poster = Poster(clock)
        chunk = chunk_of(clock, "presence-a", "presence-b", "presence-c")
        a, b, c = jobs_of(chunk)
        poster.script[c.id] = [Outcome("retry", "503")]
        await queue.push([chunk])
        first = dispatcher_for(queue, poster, Apps(APP), clock)
        first.start_leading()
        await asyncio.sleep(0.5)
        await asyncio.wait_for(first.stop_leading(), 5)
        assert poster.order() == [a.id, b.id, c.id]
        assert queue.calls == [("ended", a.id), ("ended", b.id), ("save", c.id)]
        assert await queue.depth() == 3
        second = dispatcher_for(queue, poster, Apps(APP), clock)
        second.start_leading()
        await asyncio.sleep(1)  # 1.5 s
        assert poster.order() == [a.id, b.id, c.id, c.id]
        assert poster.times(c) == pytest.approx([0, 1], abs=0.01)
        assert queue.calls[3:] == [("finish", chunk.id)]
        fresh = chunk_of(clock, "presence-d")
        await queue.push([fresh])
        await asyncio.sleep(1)  # polled within 0.5 s
        (fresh_job,) = jobs_of(fresh)
        assert poster.times(fresh_job) and poster.times(fresh_job)[0] - 1.5 <= 0.5 + 0.01
        await asyncio.wait_for(second.stop_leading(), 5)
        after = chunk_of(clock, "presence-e")
        await queue.push([after])
        await asyncio.sleep(5)
    assert poster.times(jobs_of(after)[0]) == [] and await queue.depth() == 1


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_end_to_end_on_a_real_receiver_signed_with_the_oldest_pair() -> None:
    """Recorder → MemoryQueue → Dispatcher → the real Sender → a receiver on 127.0.0.1 that
    answers 503 once: an event recorded by the Recorder and a client event frame the node
    appended, batched into one POST; the retry comes a second later with the same id and
    bytes, both checked with the Pusher Python SDK's validate_webhook under the rotation's
    oldest pair."""
    receiver = Receiver(status=503)
    await receiver.start()
    app = App(
        id="app1",
        key="new-key",
        secret="new-secret",
        previous=(("old-key", "old-secret"),),
        webhooks=(Webhook(receiver.url, ("channel_occupied", "client_event")),),
        webhook_batching=True,
    )
    queue = Queue()
    recorder = Recorder(queue.push)
    dispatcher = Dispatcher(queue, Sender(), Apps(app), True, lambda app_id: False)
    try:
        async with running(dispatcher):
            recorder.start()
            recorder.event(app, WebhookEvent("channel_occupied", "presence-room"))
            frame = '{"event":"client-x","channel":"presence-room","data":{"a":1},"user_id":"u1"}'
            recorder.log("app1").extend(("123.456", frame))  # as node.receive does
            await asyncio.wait_for(recorder.close(), 5)
            started = time.monotonic()
            while not receiver.requests and time.monotonic() - started < 5:
                await asyncio.sleep(0.01)
            receiver.status = 200
            while len(receiver.requests) < 2 and time.monotonic() - started < 8:
                await asyncio.sleep(0.01)
            while dispatcher.outcomes.get(("app1", "channel_occupied", "delivered")) != 1:
                assert time.monotonic() - started < 10, dispatcher.outcomes
                await asyncio.sleep(0.01)
            waited = time.monotonic() - started
    finally:
        await receiver.close()
    first, second = receiver.requests
    assert 0.9 <= waited < 5  # the first retry waits one second
    assert first.body == second.body
    assert first.header("webhook-id") == second.header("webhook-id")
    (webhook_id,) = first.header("webhook-id")
    (chunk_id,) = {chunk for what, chunk in queue.calls if what == "finish"}
    assert webhook_id.startswith("msg_" + chunk_id + "0000") and len(webhook_id) == 36
    sdk = pusher.Pusher(app_id="1", key="old-key", secret="old-secret")
    for request in (first, second):
        (key,) = request.header("X-Pusher-Key")
        (signature,) = request.header("X-Pusher-Signature")
        assert key == "old-key"
        checked = sdk.validate_webhook(key, signature, request.body.decode())
        assert checked is not None
        assert checked["events"] == [
            {"name": "channel_occupied", "channel": "presence-room"},
            {
                "name": "client_event",
                "channel": "presence-room",
                "user_id": "u1",
                "event": "client-x",
                "data": '{"a":1}',
                "socket_id": "123.456",
            },
        ]
    assert dispatcher.outcomes == {
        ("app1", "channel_occupied", "retried"): 1,
        ("app1", "client_event", "retried"): 1,
        ("app1", "channel_occupied", "delivered"): 1,
        ("app1", "client_event", "delivered"): 1,
    }
    assert (recorder.recorded, recorder.pushed, recorder.dropped) == (2, 2, 0)
    assert [what for what, _ in queue.calls] == ["save", "finish"]
    assert await queue.depth() == 0 and await queue.dead_letters() == []
