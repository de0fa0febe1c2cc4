"""Reclaimer: memory goes back to the OS once after a large, settled drop in connections."""

from __future__ import annotations

from ressonance.reclaim import Reclaimer, _load_malloc_trim, rss_mib


def make() -> tuple[Reclaimer, list[str]]:
    calls: list[str] = []
    reclaimer = Reclaimer(
        min_drop=1000,
        max_wait=3,
        trim=lambda: calls.append("trim"),
        collect=lambda: calls.append("collect"),
    )
    return reclaimer, calls


def test_reclaims_once_the_count_has_fallen_far_and_settled() -> None:
    reclaimer, calls = make()
    assert [reclaimer.observe(n) for n in (0, 5000, 10_000, 6000, 2000)] == [False] * 5
    assert calls == []  # still falling
    assert reclaimer.observe(2000) is True
    assert calls == ["collect", "trim"]
    assert reclaimer.observe(2000) is False  # once per drop
    assert calls == ["collect", "trim"]


def test_small_or_partial_drops_do_nothing() -> None:
    reclaimer, calls = make()
    for n in (1500, 600, 600, 600):  # fell by 900 < min_drop
        reclaimer.observe(n)
    for n in (20_000, 12_000, 12_000):  # fell by 8000, but to more than half the peak
        reclaimer.observe(n)
    assert calls == []


def test_a_long_trickle_is_reclaimed_after_max_wait() -> None:
    reclaimer, calls = make()
    reclaimer.observe(10_000)
    results = [reclaimer.observe(n) for n in (4000, 3900, 3800, 3700)]
    assert results == [False, False, False, True]
    assert calls == ["collect", "trim"]


def test_the_next_drop_is_measured_from_the_new_peak() -> None:
    reclaimer, _calls = make()
    for n in (10_000, 1000, 1000):
        reclaimer.observe(n)
    assert reclaimer.reclaims == 1
    for n in (8000, 8000, 3000, 3000):
        reclaimer.observe(n)
    assert reclaimer.reclaims == 2
    assert reclaimer.peak == 3000


def test_the_real_trim_and_rss_work_here() -> None:
    _load_malloc_trim()()  # glibc on this machine: must not raise
    rss = rss_mib()
    assert rss is not None and rss > 1
