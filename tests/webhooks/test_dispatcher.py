"""Dispatcher (webhooks/dispatcher.py) over a MemoryQueue, with a scripted Poster and virtual
time: order per channel, back-off and dead letters, final answers, the concurrency bound,
signing during a rotation, apps that are gone, the hooks, and leadership."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pusher
import pytest

from ressonance.models import App, Webhook, WebhookEvent
from ressonance.webhooks.base import GIVE_UP_AFTER, Job
from ressonance.webhooks.dispatcher import APP_GONE, Dispatcher
from ressonance.webhooks.jobs import JobMaker
from ressonance.webhooks.memory import MemoryQueue
from ressonance.webhooks.sender import Outcome, Sender
from tests.support.receiver import Receiver
from tests.webhooks.virtual_time import WALL_START, VirtualClock, virtual_time

APP = App(id="app1", key="k1", secret="s1")
URL = "https://receiver.example/hook"
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


class Poster:
    """Answers each job's attempts from a script (then ``delivered``); records every call."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.script: dict[str, list[Outcome]] = defaultdict(list)  # job id → answers
        self.calls: list[tuple[float, str, str, str, bool]] = []  # (t, job, key, secret, private)
        self.gate: asyncio.Event | None = None  # set: attempts wait for it
        self.now = 0  # attempts under way
        self.most = 0
        self.most_per_key: dict[str, int] = defaultdict(int)
        self._per_key: dict[str, int] = defaultdict(int)

    async def post(self, job: Job, key: str, secret: str, allow_private: bool) -> Outcome:
        self.calls.append((self.clock.elapsed(), job.id, key, secret, allow_private))
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


def job(clock: VirtualClock, channel: str, app: App = APP, event: str = "member_added") -> Job:
    body = {"time_ms": int(clock.wall() * 1000), "events": [{"name": event, "channel": channel}]}
    return Job(
        id="msg_" + uuid.uuid4().hex,
        app_id=app.id,
        url=URL,
        order_key=f"{app.id}|{URL}|{channel}",
        body=json.dumps(body).encode(),
        events=(event,),
        created_at=clock.wall(),
    )


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
    return Dispatcher(queue, poster, apps, False, clock.wall, **options)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_failing_job_holds_back_its_channel_only() -> None:
    queue = MemoryQueue()
    with virtual_time() as clock:
        poster = Poster(clock)
        a1, a2, b1 = job(clock, "presence-a"), job(clock, "presence-a"), job(clock, "presence-b")
        poster.script[a1.id] = [Outcome("retry", "503"), Outcome("retry", "connection refused")]
        await queue.push([a1, a2, b1])
        dispatcher = dispatcher_for(queue, poster, Apps(APP), clock)
        async with running(dispatcher):
            await asyncio.sleep(10)
    assert poster.times(a1) == pytest.approx([0, 1, 3], abs=0.01)
    assert poster.times(b1) == pytest.approx([0], abs=0.01)
    assert poster.times(a2) == pytest.approx([3], abs=0.01)  # only once a1 got through
    assert poster.order().index(a2.id) > poster.order().index(a1.id)
    assert await queue.depth() == 0 and dispatcher.held == 0
    assert dispatcher.outcomes == {
        ("app1", "member_added", "retried"): 2,
        ("app1", "member_added", "delivered"): 3,
    }


@pytest.mark.asyncio
async def test_back_off_doubles_to_60_s_and_the_job_dies_after_300_s() -> None:
    queue = MemoryQueue()
    seen: list[tuple[str, str, int]] = []

    def observe(attempted: Job, what: str, why: str) -> None:
        seen.append((what, why, attempted.attempts))

    with virtual_time() as clock:
        poster = Poster(clock)
        down = job(clock, "presence-a", event="channel_occupied")
        later = job(clock, "presence-a", event="channel_occupied")
        poster.script[down.id] = [Outcome("retry", "503")] * 100
        await queue.push([down, later])
        first = dispatcher_for(queue, poster, Apps(APP), clock, observe=observe)
        async with running(first):
            await asyncio.sleep(GIVE_UP_AFTER - 1)
        # what the queue kept of the retries: a next leader starts from there
        await queue.take_over()
        saved = await queue.take(10)
        assert [j.id for j in saved] == [down.id, later.id]
        assert (saved[0].attempts, saved[0].last_error) == (10, "503")
        assert saved[0].next_at == pytest.approx(WALL_START + 303, abs=0.01)
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
    assert first.outcomes == {("app1", "channel_occupied", "retried"): 10}
    assert second.outcomes == {
        ("app1", "channel_occupied", "dead"): 1,
        ("app1", "channel_occupied", "delivered"): 1,
    }
    assert second.failed == 0 and await second.depth() == 0


@pytest.mark.asyncio
async def test_a_final_answer_is_a_dead_letter_at_once() -> None:
    queue = MemoryQueue()
    latencies: list[float] = []
    with virtual_time() as clock:
        poster = Poster(clock)
        refused, after = job(clock, "presence-a"), job(clock, "presence-a")
        poster.script[refused.id] = [Outcome("final", "404")]
        poster.script[after.id] = [Outcome("retry", "502")]
        await queue.push([refused, after])
        dispatcher = dispatcher_for(queue, poster, Apps(APP), clock, latency=latencies.append)
        async with running(dispatcher):
            await asyncio.sleep(5)
    assert poster.times(refused) == pytest.approx([0], abs=0.01)
    assert poster.times(after) == pytest.approx([0, 1], abs=0.01)
    (letter,) = await queue.dead_letters(app_id="app1")
    assert (letter.id, letter.job.attempts, letter.job.last_error) == (refused.id, 1, "404")
    assert dispatcher.failed == 1
    assert dispatcher.outcomes[("app1", "member_added", "dead")] == 1
    assert latencies == pytest.approx([1], abs=0.01)  # from the job's creation to its delivery
    replayed = await queue.replay(refused.id, clock.wall())
    assert replayed is not None and replayed.id == refused.id and replayed.attempts == 0
    assert await queue.dead_letters() == [] and await queue.depth() == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("concurrency", [4, None])  # None: the default, 16
async def test_at_most_concurrency_attempts_and_one_per_channel(concurrency: int | None) -> None:
    bound = concurrency or 16
    queue = MemoryQueue()
    with virtual_time() as clock:
        poster = Poster(clock)
        poster.gate = asyncio.Event()
        jobs = [job(clock, f"presence-{n}") for n in range(40)]
        same = [job(clock, "presence-same") for _ in range(5)]
        await queue.push(same[:1] + jobs + same[1:])
        options = {} if concurrency is None else {"concurrency": concurrency}
        dispatcher = dispatcher_for(queue, poster, Apps(APP), clock, **options)
        async with running(dispatcher):
            await asyncio.sleep(1)
            assert (poster.now, dispatcher.in_flight, dispatcher.held) == (bound, bound, 45)
            poster.gate.set()
            await asyncio.sleep(1)
    assert poster.most == bound
    assert poster.most_per_key[f"app1|{URL}|presence-same"] == 1
    assert sorted(poster.order()) == sorted(j.id for j in jobs + same)
    assert [i for i in poster.order() if i in {j.id for j in same}] == [j.id for j in same]
    assert await queue.depth() == 0


@pytest.mark.asyncio
async def test_signed_with_the_oldest_active_pair_during_a_rotation() -> None:
    rotating = App(id="app1", key="k3", secret="s3", previous=(("k2", "s2"), ("k1", "s1")))
    apps = Apps(rotating)
    queue = MemoryQueue()
    with virtual_time() as clock:
        poster = Poster(clock)
        first = job(clock, "presence-a")
        poster.script[first.id] = [Outcome("retry", "503")]
        await queue.push([first])
        async with running(dispatcher_for(queue, poster, apps, clock)):
            await asyncio.sleep(0.5)
            apps.apps["app1"] = App(id="app1", key="k3", secret="s3")  # the grace ended
            await asyncio.sleep(2)
    assert [(key, secret) for _, _, key, secret, _ in poster.calls] == [
        ("k1", "s1"),
        ("k3", "s3"),
    ]


@pytest.mark.asyncio
async def test_the_job_of_an_app_gone_or_disabled_is_a_dead_letter() -> None:
    queue = MemoryQueue()
    disabled = App(id="app2", key="k2", secret="s2", enabled=False)
    gone = App(id="app3", key="k3", secret="s3")
    with virtual_time() as clock:
        poster = Poster(clock)
        jobs = [job(clock, "presence-a", app) for app in (disabled, gone, APP)]
        await queue.push(jobs)
        dispatcher = dispatcher_for(queue, poster, Apps(APP, disabled), clock)
        async with running(dispatcher):
            await asyncio.sleep(2)
    assert poster.order() == [jobs[2].id]
    letters = {letter.id: letter.job for letter in await queue.dead_letters()}
    assert {i: (j.app_id, j.last_error) for i, j in letters.items()} == {
        jobs[0].id: ("app2", APP_GONE),
        jobs[1].id: ("app3", APP_GONE),
    }
    assert dispatcher.failed == 2 and await queue.depth() == 0


@pytest.mark.asyncio
async def test_the_leader_takes_over_jobs_and_stops_when_it_is_no_longer_leader() -> None:
    queue = MemoryQueue()
    with virtual_time() as clock:
        poster = Poster(clock)
        orphans = [job(clock, "presence-a"), job(clock, "presence-b")]
        await queue.push(orphans)
        assert len(await queue.take(10)) == 2  # taken by a leader that died
        dispatcher = dispatcher_for(queue, poster, Apps(APP), clock)
        dispatcher.start_leading()
        await asyncio.sleep(1)
        assert sorted(poster.order()) == sorted(j.id for j in orphans)
        fresh = job(clock, "presence-c")
        await queue.push([fresh])
        await asyncio.sleep(1)  # polled within 0.5 s
        assert poster.times(fresh) and poster.times(fresh)[0] - 1 <= 0.5 + 0.01
        await asyncio.wait_for(dispatcher.stop_leading(), 5)
        after = job(clock, "presence-d")
        await queue.push([after])
        await asyncio.sleep(5)
    assert poster.times(after) == [] and await queue.depth() == 1


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_end_to_end_on_a_real_receiver_signed_with_the_oldest_pair() -> None:
    """JobMaker → MemoryQueue → Dispatcher → the real Sender → a receiver on 127.0.0.1 that
    answers 503 once: the retry comes a second later with the same id and bytes, both checked
    with the Pusher Python SDK's validate_webhook under the rotation's oldest pair."""
    receiver = Receiver(status=503)
    await receiver.start()
    app = App(
        id="app1",
        key="new-key",
        secret="new-secret",
        previous=(("old-key", "old-secret"),),
        webhooks=(Webhook(f"http://127.0.0.1:{receiver.port}/hook", ("channel_occupied",)),),
    )
    queue = MemoryQueue()
    maker = JobMaker(queue.push, lambda app_id: False)
    dispatcher = Dispatcher(queue, Sender(), Apps(app), True)
    try:
        async with running(dispatcher):
            maker(app, WebhookEvent("channel_occupied", "presence-room"))
            await asyncio.wait_for(maker.close(), 5)
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
    sdk = pusher.Pusher(app_id="1", key="old-key", secret="old-secret")
    for request in (first, second):
        (key,) = request.header("X-Pusher-Key")
        (signature,) = request.header("X-Pusher-Signature")
        assert key == "old-key"
        checked = sdk.validate_webhook(key, signature, request.body.decode())
        assert checked is not None
        assert checked["events"] == [{"name": "channel_occupied", "channel": "presence-room"}]
    assert dispatcher.outcomes == {
        ("app1", "channel_occupied", "retried"): 1,
        ("app1", "channel_occupied", "delivered"): 1,
    }
    assert await queue.depth() == 0 and await queue.dead_letters() == []
