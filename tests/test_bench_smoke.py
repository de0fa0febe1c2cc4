"""Smoke test of the benchmark suite (bench/): builds the C load generator, runs every scenario
at tiny sizes against our server and checks that each one reported figures. Never asserts
numbers: those belong to docs/performance.md. Soketi is not needed; the cluster scenarios need
redis-server (missing, they fail on CI and are left out elsewhere)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.cluster import redis_binary

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(150)
def test_quick_bench_reports_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    listed = subprocess.run(
        [sys.executable, "-m", "bench", "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert len(names) >= 10
    cluster = [n for n in names if n.startswith("cluster-")]
    assert cluster, "the cluster scenarios are listed"
    if not _has_redis_server():
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (scripts/install-test-deps.sh installs it)")
        names = [n for n in names if n not in cluster]

    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", ",".join(names), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    medians = result["medians"]["ressonance"]
    assert sorted(medians) == sorted(names)
    for name in names:
        assert "error" not in medians[name], (name, medians[name])
        assert medians[name]["runs_ok"] == 1
    assert result["rows"], "the table has rows"
    assert "scenario" in run.stdout
    if "cluster-fanout-1k" in names:
        figures = medians["cluster-fanout-1k"]
        # closed loop: with node B's half never delivered (over Redis) the window stays full
        # from the start and nothing is counted
        assert figures["deliveries_per_s"] > 0 and "lost" not in figures, figures
        assert result["versions"]["redis"], result["versions"]
        derived = {row["scenario"] for row in result["rows"]}
        assert "cluster-fanout-1k vs fanout-1k" in derived, derived


def _has_redis_server() -> bool:
    try:
        redis_binary()
    except RuntimeError:
        return False
    return True


@pytest.mark.timeout(90)
def test_quick_ceiling_run_against_the_sink(tmp_path: Path) -> None:
    out = tmp_path / "ceiling.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--ceiling", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    medians = json.loads(out.read_text())["medians"]["sink"]
    assert medians, "the ceiling run measured something"
    for name, figures in medians.items():
        assert "error" not in figures, (name, figures)


@pytest.mark.timeout(90)
def test_quick_ab_against_a_git_revision(tmp_path: Path) -> None:
    """--baseline: the committed HEAD (git archive) and the tree, interleaved, with ratios."""
    out = tmp_path / "ab.json"
    only = ["client-events", "http-publish"]
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--runs", "2", "--baseline", "HEAD",
         "--only", ",".join(only), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=80,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert result["versions"]["baseline"] == head
    for side in ("current", "baseline"):
        for name in only:
            figures = result["medians"][side][name]
            assert "error" not in figures and figures["runs_ok"] == 2, (side, name, figures)
    # interleaved: run 1 current first, run 2 baseline first
    order = [
        line.split()[-4]
        for line in run.stderr.splitlines()
        if line.startswith("[") and " client-events " in line
    ]
    assert order == ["current", "baseline", "baseline", "current"], run.stderr[-2000:]
    headlines = [row for row in result["rows"] if row["scenario"] in only]
    assert len(headlines) == 2, result["rows"]
    for row in headlines:
        assert row["ratio"] == round(row["current"] / row["baseline"], 3), row
        assert row["target"] == "ratio >= 0.97", row
    assert "ratio current/baseline" in run.stdout


def test_baseline_must_be_a_git_revision() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--baseline", "no-such-rev-0123",
         "--only", "client-events"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0
    assert "'no-such-rev-0123' is not a git revision" in run.stderr
    mixed = subprocess.run(
        [sys.executable, "-m", "bench", "--baseline", "HEAD", "--against", "soketi"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert mixed.returncode == 2 and "not with --against" in mixed.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("path", "hooks"),
    [
        ("http-publish", ""),
        ("client-event", ""),
        ("fanout-1k", ""),
        ("client-event", "noop"),  # --webhooks: the app's client_event webhook makes jobs
        ("client-event", "sqlite"),
    ],
)
def test_instruction_count_driver_runs_each_path(path: str, hooks: str) -> None:
    """bench/instructions.py's driver (run under valgrind there) on this tree, without
    valgrind: each path's operations succeed (its asserts: a 200, deliveries made, with
    webhooks every client event a job)."""
    from bench.instructions import DRIVER

    events = "client_event,channel_occupied,channel_vacated"
    run = subprocess.run(
        [sys.executable, "-c", DRIVER, path, "3", hooks, events],
        env=os.environ | {"PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert run.returncode == 0, run.stderr[-2000:]
