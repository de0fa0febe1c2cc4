"""JobMaker (webhooks/jobs.py): the jobs of the webhooks that want an event, their bodies, ids
and order keys; batches within 0.25 s and of at most 100 events; one push for a burst; the
bounded buffer that holds jobs while the queue cannot be reached."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from ressonance.models import App, Webhook, WebhookEvent
from ressonance.storage.base import Unavailable
from ressonance.webhooks.base import Job
from ressonance.webhooks.jobs import BATCH_MAX, BATCH_WINDOW, JobMaker, body, single_body
from ressonance.webhooks.memory import MemoryQueue
from tests.webhooks.virtual_time import VirtualClock, virtual_time

OCCUPIED = Webhook("https://a.example/hook", ("channel_occupied",), "presence-")
MEMBERS = Webhook(
    "https://b.example/hook",
    ("member_added", "channel_occupied"),
    headers=(("X-Token", "t1"),),
)
SUFFIX = Webhook("https://c.example/hook", ("channel_occupied",), channel_name_ends_with="-x")
APP = App(id="app1", key="k1", secret="s1", webhooks=(OCCUPIED, MEMBERS, SUFFIX))
BATCHED = App(id="app2", key="k2", secret="s2", webhooks=(OCCUPIED, MEMBERS), webhook_batching=True)
TENANTS = {"app2"}


def maker_on(queue: MemoryQueue, clock: VirtualClock) -> JobMaker:
    return JobMaker(queue.push, TENANTS.__contains__, clock=clock.wall, monotonic=clock.monotonic)


async def everything(queue: MemoryQueue) -> list[Job]:
    return await queue.take(1_000_000)


def events_of(job: Job) -> list[dict[str, object]]:
    body = json.loads(job.body)
    assert set(body) == {"time_ms", "events"}
    return list(body["events"])


@pytest.mark.asyncio
async def test_a_job_for_each_webhook_that_wants_the_event() -> None:
    queue = MemoryQueue()
    with virtual_time() as clock:
        maker = maker_on(queue, clock)
        made_at = clock.wall()
        maker(APP, WebhookEvent("channel_occupied", "presence-room"))
        maker(APP, WebhookEvent("member_added", "presence-room", user_id="u1"))
        maker(APP, WebhookEvent("channel_vacated", "presence-room"))  # nobody wants it
        maker(APP, WebhookEvent("channel_occupied", "room-x"))
        await asyncio.wait_for(maker.close(), 5)
    jobs = await everything(queue)
    assert [(job.url, job.order_key, job.events) for job in jobs] == [
        (OCCUPIED.url, f"app1|{OCCUPIED.url}|presence-room", ("channel_occupied",)),
        (MEMBERS.url, f"app1|{MEMBERS.url}|presence-room", ("channel_occupied",)),
        (MEMBERS.url, f"app1|{MEMBERS.url}|presence-room", ("member_added",)),
        (MEMBERS.url, f"app1|{MEMBERS.url}|room-x", ("channel_occupied",)),
        (SUFFIX.url, f"app1|{SUFFIX.url}|room-x", ("channel_occupied",)),
    ]
    first, member = jobs[0], jobs[2]
    assert first.body == (
        b'{"time_ms":%d,"events":[{"name":"channel_occupied","channel":"presence-room"}]}'
        % int(made_at * 1000)
    )
    assert jobs[1].body == first.body  # one event, one body for every webhook
    assert events_of(member) == [
        {"name": "member_added", "channel": "presence-room", "user_id": "u1"}
    ]
    assert member.headers == (("X-Token", "t1"),) and first.headers == ()
    assert all(job.app_id == "app1" and not job.tenant for job in jobs)
    assert all(job.created_at == made_at and job.attempts == 0 for job in jobs)
    assert maker.made == maker.pushed == 5 and maker.dropped == 0


@pytest.mark.asyncio
async def test_ids_are_unique_and_a_burst_is_one_push() -> None:
    pushes: list[int] = []
    queue = MemoryQueue()

    async def push(jobs: list[Job]) -> None:
        pushes.append(len(jobs))
        await queue.push(jobs)

    app = App(id="app3", key="k3", secret="s3", webhooks=(MEMBERS,))
    maker = JobMaker(push, lambda app_id: app_id == "app3")
    tasks_before = len(asyncio.all_tasks())
    for n in range(500):
        maker(app, WebhookEvent("member_added", f"presence-{n % 7}", user_id=str(n)))
    assert len(asyncio.all_tasks()) == tasks_before + 1  # one flush task, not one per event
    await asyncio.wait_for(maker.close(), 5)
    jobs = await everything(queue)
    assert pushes == [500]
    assert len({job.id for job in jobs}) == 500
    assert all(re.fullmatch(r"msg_[0-9a-f]{32}", job.id) for job in jobs)
    assert [events_of(job)[0]["user_id"] for job in jobs] == [str(n) for n in range(500)]
    assert all(job.tenant for job in jobs)


@pytest.mark.asyncio
async def test_a_batch_holds_the_events_of_one_window_in_order() -> None:
    queue = MemoryQueue()
    with virtual_time() as clock:
        maker = maker_on(queue, clock)
        maker(BATCHED, WebhookEvent("channel_occupied", "presence-a"))
        await asyncio.sleep(0.1)
        maker(BATCHED, WebhookEvent("member_added", "presence-b", user_id="u1"))
        await asyncio.sleep(0.1)
        maker(BATCHED, WebhookEvent("channel_occupied", "presence-b"))
        await asyncio.sleep(BATCH_WINDOW - 0.21)  # 0.24 s after the first event
        assert await queue.depth() == 0
        await asyncio.sleep(0.02)
        closed_at = clock.wall()
        assert await queue.depth() == 2
        maker(BATCHED, WebhookEvent("channel_occupied", "presence-c"))  # a new window
        await asyncio.sleep(BATCH_WINDOW + 0.01)
        assert await queue.depth() == 4
        await asyncio.wait_for(maker.close(), 5)
    first, members, *later = await everything(queue)
    assert (first.url, first.order_key) == (OCCUPIED.url, f"app2|{OCCUPIED.url}")
    assert (members.url, members.order_key) == (MEMBERS.url, f"app2|{MEMBERS.url}")
    assert events_of(first) == [
        {"name": "channel_occupied", "channel": "presence-a"},
        {"name": "channel_occupied", "channel": "presence-b"},
    ]
    assert members.events == ("channel_occupied", "member_added", "channel_occupied")
    assert [event["channel"] for event in events_of(members)] == [
        "presence-a",
        "presence-b",
        "presence-b",
    ]
    assert abs(json.loads(members.body)["time_ms"] - (closed_at - 0.01) * 1000) <= 1
    assert members.tenant and members.headers == (("X-Token", "t1"),)
    assert [(job.url, events_of(job)) for job in later] == [
        (url, [{"name": "channel_occupied", "channel": "presence-c"}])
        for url in (OCCUPIED.url, MEMBERS.url)
    ]


@pytest.mark.asyncio
async def test_a_batch_has_at_most_100_events() -> None:
    queue = MemoryQueue()
    app = App(id="app4", key="k4", secret="s4", webhooks=(MEMBERS,), webhook_batching=True)
    with virtual_time() as clock:
        maker = maker_on(queue, clock)
        for n in range(2 * BATCH_MAX + 50):
            maker(app, WebhookEvent("member_added", "presence-a", user_id=str(n)))
        await asyncio.sleep(0.01)
        assert [len(job.events) for job in await everything(queue)] == [BATCH_MAX, BATCH_MAX]
        await asyncio.sleep(BATCH_WINDOW)
        rest = await everything(queue)
    assert [len(job.events) for job in rest] == [50]
    assert events_of(rest[0])[0]["user_id"] == str(2 * BATCH_MAX)


@pytest.mark.asyncio
async def test_batches_close_each_at_the_end_of_its_own_window() -> None:
    queue = MemoryQueue()
    occupied = Webhook("https://a.example/hook", ("channel_occupied",))
    members = Webhook("https://b.example/hook", ("member_added",))
    app = App(id="app6", key="k6", secret="s6", webhooks=(occupied, members), webhook_batching=True)
    with virtual_time() as clock:
        maker = maker_on(queue, clock)
        maker(app, WebhookEvent("channel_occupied", "presence-a"))
        await asyncio.sleep(0.2)
        maker(app, WebhookEvent("member_added", "presence-a", user_id="u1"))
        await asyncio.sleep(0.06)  # 0.26 s
        assert [job.url for job in await everything(queue)] == [occupied.url]
        await asyncio.sleep(0.18)  # 0.44 s
        assert await queue.depth() == 1
        await asyncio.sleep(0.02)  # 0.46 s
        assert [job.url for job in await everything(queue)] == [members.url]


@pytest.mark.asyncio
async def test_jobs_wait_in_a_bounded_buffer_while_the_queue_is_down() -> None:
    queue = MemoryQueue()
    attempts: list[tuple[float, int]] = []
    down = True

    with virtual_time() as clock:

        async def push(jobs: list[Job]) -> None:
            attempts.append((round(clock.elapsed(), 3), len(jobs)))
            if down:
                await asyncio.sleep(0.5)  # the database takes its time to fail
                raise Unavailable("database is down")
            await queue.push(jobs)

        maker = JobMaker(
            push, TENANTS.__contains__, clock=clock.wall, monotonic=clock.monotonic, buffer=12
        )
        app = App(id="app5", key="k5", secret="s5", webhooks=(MEMBERS,))

        def make(numbers: range) -> None:
            for n in numbers:
                maker(app, WebhookEvent("member_added", "presence-a", user_id=str(n)))

        make(range(10))
        await asyncio.sleep(0.1)  # the ten are being pushed
        make(range(10, 15))  # two wait behind them, three are dropped
        assert (maker.made, maker.waiting, maker.dropped) == (15, 12, 3)
        await asyncio.sleep(3)
        assert attempts == [(0.0, 10), (1.5, 12), (3.0, 12)]
        assert await queue.depth() == 0 and maker.waiting == 12
        down = False
        await asyncio.wait_for(maker.close(), 5)
        assert attempts[-1] == (4.5, 12)
    jobs = await everything(queue)
    assert [events_of(job)[0]["user_id"] for job in jobs] == [str(n) for n in range(12)]
    assert (maker.pushed, maker.waiting, maker.dropped) == (12, 0, 3)


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
def test_a_single_event_body_is_the_bytes_the_json_encoder_writes(event: WebhookEvent) -> None:
    assert single_body(1796193586123, event) == body(1796193586123, [event.to_json()])
