"""`python -m bench --webhooks`: the slow receiver (bench/receiver.py) answers late and counts
what it got, and a quick run gives the tree's bench app webhooks that make jobs (the node's
queue holds some when it is killed). Never asserts throughput: docs/performance.md."""

import http.client
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench.servers import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(30)
def test_receiver_answers_after_its_delay_and_counts_on_sigterm(tmp_path: Path) -> None:
    port, stats = free_port(), tmp_path / "stats.json"
    argv = [sys.executable, "-m", "bench.receiver", "--port", str(port), "--delay", "0.5",
            "--stats", str(stats)]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.connect()
                break
            except OSError:
                assert time.monotonic() < deadline, "the receiver did not listen"
                time.sleep(0.05)
        body = json.dumps({"time_ms": 1, "events": [{"name": "client_event"}] * 2})
        started = time.monotonic()
        conn.request("POST", "/hook", body, {"Content-Type": "application/json"})
        status = conn.getresponse().status
        waited = time.monotonic() - started
        conn.close()
        assert status == 200
        assert waited >= 0.45, waited
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        counted = json.loads(stats.read_text())
        assert {k: counted[k] for k in ("requests", "answered", "events")} == {
            "requests": 1,
            "answered": 1,
            "events": 2,
        }
        assert counted["bytes"] > len(body)  # the head and the body
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.timeout(120)
def test_quick_bench_with_webhooks_keeps_events_on_the_tree(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "client-events", "--webhooks",
         "slow", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["args"]["webhooks"] == "slow"
    (figures,) = result["runs"]["ressonance"]["client-events"]
    assert "error" not in figures, figures
    # the client events of the run were kept by the node's queue (the slow receiver took few)
    assert figures["webhook_events_left"] > 1000, figures
    hooks = result["webhooks"]
    assert hooks["servers"] == ["ressonance"]
    assert hooks["config"][0]["event_types"] == [
        "client_event",
        "channel_occupied",
        "channel_vacated",
    ]
    assert set(hooks["received"]) == {"requests", "answered", "events", "bytes"}


def test_webhooks_refused_with_the_cluster_scenarios() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "cluster-fanout-1k", "--webhooks", "slow"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0
    assert "single-node scenarios only" in run.stderr
