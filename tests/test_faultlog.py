"""FaultLog: at most N tracebacks per interval, then one counted summary line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ressonance.faultlog import FaultLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(faults: FaultLog, times: int) -> None:
    for i in range(times):
        try:
            raise RuntimeError(f"boom {i}")
        except RuntimeError:
            faults.exception("internal error %d", i)


def records(caplog: pytest.LogCaptureFixture) -> tuple[int, list[str]]:
    """(tracebacks, messages of the lines without one)."""
    with_tb = sum(1 for r in caplog.records if r.exc_info)
    return with_tb, [r.getMessage() for r in caplog.records if not r.exc_info]


def test_a_flood_logs_the_budget_then_one_summary(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    faults = FaultLog(logging.getLogger("test.faults"), limit=10, interval=60, clock=clock)
    with caplog.at_level(logging.ERROR, "test.faults"):
        fail(faults, 1000)
        assert records(caplog) == (10, [])
        clock.now += 60
        fail(faults, 1)
    tracebacks, lines = records(caplog)
    assert tracebacks == 11  # the new interval has its own budget
    assert len(lines) == 1 and lines[0].startswith("990 more unexpected exceptions"), lines


def test_under_the_budget_nothing_is_summarized(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    faults = FaultLog(logging.getLogger("test.faults"), limit=10, interval=60, clock=clock)
    with caplog.at_level(logging.ERROR, "test.faults"):
        for _ in range(5):
            fail(faults, 3)
            clock.now += 61
    assert records(caplog) == (15, [])


@pytest.mark.asyncio
async def test_the_summary_comes_when_the_interval_ends(caplog: pytest.LogCaptureFixture) -> None:
    """No exception after the flood: the summary is written by a timer all the same."""
    faults = FaultLog(logging.getLogger("test.faults"), limit=2, interval=0.2)
    with caplog.at_level(logging.ERROR, "test.faults"):
        fail(faults, 7)
        assert records(caplog) == (2, [])
        async with asyncio.timeout(5):
            while not records(caplog)[1]:
                await asyncio.sleep(0.05)
    assert records(caplog)[1][0].startswith("5 more unexpected exceptions"), caplog.records
