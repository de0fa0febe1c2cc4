"""`python -m bench`: every scenario against ressonance (and Soketi), a table and a JSON file.

    .venv/bin/python -m bench                        all scenarios, 3 runs, ressonance only
    .venv/bin/python -m bench --against soketi       the same on Soketi, interleaved, with ratios
    .venv/bin/python -m bench --only fanout-10k,idle-10k --runs 5
    .venv/bin/python -m bench --quick                tiny sizes, one run (the smoke test)
    .venv/bin/python -m bench --baseline REV         an A/B: the tree against git revision REV,
                                                     interleaved, with ratios current/baseline
    .venv/bin/python -m bench --baseline REV --webhooks slow
                                                     the same, the tree's app with webhooks
                                                     (client events, channels occupied/vacated)
                                                     to a receiver that answers after 2 s

The server runs on CPU 0, the load generator (bench/loadgen.c) on CPU 1; a fresh server process
per measurement; medians over the runs. The cluster-* scenarios run two nodes and a private
redis-server, all on CPU 0 (ressonance only). See docs/performance.md for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.cluster import redis_version, start_cluster
from bench.scenarios import FULL, QUICK, SCENARIOS, Metrics, Scenario, Target
from bench.servers import (
    RECEIVER_DELAYS,
    REPO,
    SOKETI_DIR,
    WEBHOOK_EVENTS,
    soketi_available,
    start,
    start_receiver,
    stop_receiver,
)

# what the trivial sink server can serve (one channel list, no auth, no presence, no HTTP)
CEILING_SCENARIOS = "idle-10k,idle-19.5k,fanout-1k,fanout-10k,client-events"
SCENARIO_TIMEOUT_S = 150.0  # hard limit for one measurement, setup included

# (scenario, figure, comparison, target): ratio targets are ours/soketi, absolute ones ours only
RATIO_TARGETS: list[tuple[str, str, str, float]] = [
    ("fanout-10k", "deliveries_per_s", ">=", 3.0),
    ("idle-10k", "kib_per_conn", "<=", 0.5),
    ("idle-19.5k", "kib_per_conn", "<=", 0.5),
    ("latency-1k", "p99_ms", "<=", 1.0),
    ("http-publish", "requests_per_s", ">=", 1.0),
    ("client-events", "deliveries_per_s", ">=", 1.0),
]
# rows that compare two of our own figures:
# (row scenario, row figure, scenario, over this scenario, figure, minimum ratio or None)
OWN_RATIOS: list[tuple[str, str, str, str, str, float | None]] = [
    ("fanout 10k vs 1k", "ours 10k/1k", "fanout-10k", "fanout-1k", "deliveries_per_s", 0.8),
    ("cluster-fanout-1k vs fanout-1k", "ours 2 nodes/1 deliveries/s",
     "cluster-fanout-1k", "fanout-1k", "deliveries_per_s", None),
    ("cluster-latency-1k vs latency-1k", "ours 2 nodes/1 p50",
     "cluster-latency-1k", "latency-1k", "p50_ms", None),
    ("cluster-latency-1k vs latency-1k", "ours 2 nodes/1 p99",
     "cluster-latency-1k", "latency-1k", "p99_ms", None),
]  # fmt: skip
# --baseline: the two sides of an A/B, and how far "current" may fall behind on any figure
AB = ["current", "baseline"]
AB_TOLERANCE = 0.03
OURS = ("ressonance", *AB)  # the servers whose own ratios (10k/1k, ...) are shown
# --webhooks: the servers that get the webhooks (the baseline may predate them: never it)
WEBHOOK_SERVERS = ("ressonance", "current")
# why a server does not run the cluster scenarios (a "—" in the table)
NO_CLUSTER = {
    "soketi": "Soketi's cluster (its Redis adapter) is not set up by the suite",
    "sink": "the sink is one process",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--against", choices=["soketi"], help="also run every scenario on Soketi")
    p.add_argument("--only", help="comma-separated scenario names (default: all)")
    p.add_argument("--runs", type=int, help="repetitions per figure (default 3, --quick 1)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and durations, one run")
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/<timestamp>.json)")
    p.add_argument(
        "--src", type=Path, help="run ressonance from this source tree (PYTHONPATH) instead"
    )
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="an A/B: run every scenario on git revision REV too (git archive), interleaved "
        "with the current tree (or --src), with ratios current/baseline",
    )
    p.add_argument(
        "--ceiling",
        action="store_true",
        help="measure the load generator itself against a trivial C server (loadgen sink)",
    )
    p.add_argument(
        "--webhooks",
        choices=sorted(RECEIVER_DELAYS),
        help="give the bench app of the tree (not the --baseline) webhooks for "
        + ", ".join(WEBHOOK_EVENTS)
        + " to a receiver run by the bench on 127.0.0.1: slow answers 200 after 2 s, hang never "
        "answers (the 5 s time-out and retries); single-node scenarios only",
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = p.parse_args(argv)
    if args.baseline and (args.against or args.ceiling):
        p.error("--baseline compares two revisions of ressonance: not with --against or --ceiling")
    if args.webhooks and (args.against or args.ceiling):
        p.error("--webhooks configures ressonance only: not with --against or --ceiling")
    return args


def select(only: str | None) -> list[Scenario]:
    if not only:
        return SCENARIOS
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def resolve(rev: str) -> str:
    """The full commit id of git revision `rev` (--baseline), or exit with why."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        cwd=REPO, capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    if found.returncode != 0:
        raise SystemExit(f"--baseline: {rev!r} is not a git revision of {REPO}")
    return found.stdout.strip()


def extract(commit: str, into: Path) -> Path:
    """`git archive COMMIT | tar -x -C into`; the tree's src/, to run with PYTHONPATH."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True,
                             check=True, timeout=60).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    src = into / "src"
    # PYTHONPATH must win over the editable install of the work tree, or the A/B compares
    # the tree with itself
    probe = subprocess.run(
        [sys.executable, "-c", "import ressonance; print(ressonance.__file__)"],
        env=os.environ | {"PYTHONPATH": str(src)}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if not Path(probe.stdout.strip()).is_relative_to(src):
        raise SystemExit(f"--baseline: {src} does not import as ressonance: {probe.stderr[-500:]}")
    return src


def _cmd(*argv: str, cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions(
    src: Path | None, servers: list[str], scenarios: list[Scenario], baseline: str | None
) -> dict[str, Any]:
    rev = _cmd("git", "rev-parse", "--short=12", "HEAD", cwd=REPO)
    dirty = bool(_cmd("git", "status", "--porcelain", "--", "src", cwd=REPO))
    v: dict[str, Any] = {
        "ressonance": f"{rev}{'+dirty src/' if dirty and src is None else ''}",
        "ressonance_src": str(src) if src else "src/ (editable install)",
    }
    if baseline:
        v["baseline"] = baseline
    if "soketi" in servers:
        package = SOKETI_DIR / "node_modules/@soketi/soketi/package.json"
        v["soketi"] = json.loads(package.read_text())["version"]
        v["node"] = _cmd("node", "--version")
    if any(sc.cluster for sc in scenarios):
        v["redis"] = redis_version()
    return v


def measure(
    scenario: Scenario,
    name: str,
    quick: bool,
    workdir: Path,
    src: Path | None,
    webhooks: str | None = None,
) -> Metrics:
    if scenario.cluster and name in NO_CLUSTER:
        return {"skipped": NO_CLUSTER[name]}
    server: Target | None = None
    hooks = webhooks if name in WEBHOOK_SERVERS else None
    try:
        if scenario.cluster:
            server = start_cluster(workdir, src)
        else:
            server = start(name, workdir, src, webhooks=hooks)
        deadline = time.monotonic() + SCENARIO_TIMEOUT_S
        metrics = scenario.run(server, QUICK if quick else FULL, deadline, workdir)
        if not server.alive():
            raise RuntimeError(f"{name} exited during the measurement")
        if hooks is not None:
            server.stop()
            metrics |= webhook_events(workdir / f"data-{server.port}")
        return metrics
    except (RuntimeError, OSError, loadgen.Timeout, subprocess.SubprocessError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        if server is not None:
            server.stop()
            if hooks is not None:  # a client-events run queues tens of MB of events
                shutil.rmtree(workdir / f"data-{server.port}", ignore_errors=True)


def webhook_events(data_dir: Path) -> Metrics:
    """Webhook events left in a stopped node's queue (its app store's SQLite file): kept and
    not delivered yet (`webhook_events_left`), and dead letters: proof that they were kept."""
    db = sqlite3.connect(f"file:{data_dir / 'ressonance.db'}?mode=ro", uri=True, timeout=10)
    try:
        left = db.execute("SELECT coalesce(sum(size), 0) FROM webhook_chunks").fetchone()[0]
        dead = db.execute("SELECT count(*) FROM webhook_dead").fetchone()[0]
    except sqlite3.Error as e:
        return {"webhook_events_error": str(e)}
    finally:
        db.close()
    return {"webhook_events_left": left, "webhook_dead": dead}


def medians(runs: list[Metrics]) -> Metrics:
    if runs and all("skipped" in r for r in runs):
        return {"skipped": runs[0]["skipped"]}
    ok = [r for r in runs if "error" not in r]
    out: Metrics = {"runs_ok": len(ok), "runs": len(runs)}
    if not ok:
        out["error"] = runs[-1].get("error", "no run") if runs else "no run"
        return out
    for key in ok[0]:
        values = [r[key] for r in ok if isinstance(r.get(key), int | float)]
        if values and len(values) == len([r for r in ok if key in r]):
            out[key] = round(statistics.median(values), 3)
    return out


def fmt(v: Any) -> str:
    if not isinstance(v, int | float):
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def ab_target(figure: str) -> tuple[str, float] | None:
    """The A/B target of a figure: current/baseline may lose at most AB_TOLERANCE. None for a
    growth in percent: near zero, a ratio of two of them says nothing."""
    if figure.endswith("_pct"):
        return None
    if figure.endswith("_per_s"):  # throughput: higher is better
        return ">=", round(1 - AB_TOLERANCE, 3)
    return "<=", round(1 + AB_TOLERANCE, 3)  # latency, memory per connection: lower is better


def rows(result: dict[str, Any], servers: list[str]) -> list[dict[str, Any]]:
    """One row per scenario headline, plus the two derived targets. The ratio is the first
    server over the second (ours/soketi, or current/baseline for an A/B)."""
    med = result["medians"]
    out: list[dict[str, Any]] = []
    targets = {(s, f): (op, t) for s, f, op, t in RATIO_TARGETS}
    ab = servers == AB
    for sc in SCENARIOS:
        if sc.name not in med.get(servers[0], {}):
            continue
        figures = [sc.main]
        if sc.name.startswith("idle"):
            figures.append("conns_per_s")
        if sc.name == "memory-after-leave":
            figures.append("cycle_growth_pct")  # a leak would grow from cycle to cycle
        if "latency" in sc.name:
            figures = ["p50_ms", "p95_ms", "p99_ms"]
        for fig in figures:
            row: dict[str, Any] = {"scenario": sc.name, "figure": fig}
            for s in servers:
                m = med[s].get(sc.name, {})
                row[s] = m.get(fig)
                row[f"{s}_client_cpu"] = m.get("client_cpu")
            ours = row.get(servers[0])
            theirs = row.get(servers[1]) if len(servers) > 1 else None
            comparable = fig != "cycle_growth_pct"  # near zero, either sign: no ratio
            if (
                comparable
                and isinstance(ours, int | float)
                and isinstance(theirs, int | float)
                and theirs
            ):
                row["ratio"] = round(ours / theirs, 3)
            target = targets.get((sc.name, fig)) if "ressonance" in servers else None
            if ab:
                target = ab_target(fig)
            if target:
                op, t = target
                row["target"] = f"ratio {op} {t:g}"
                if "ratio" in row:
                    r = row["ratio"]
                    row["met"] = r >= t if op == ">=" else r <= t
            out.append(row)
    # our own ratios, for each of our servers; the target is met (or not) by the first
    own = [s for s in servers if s in OURS]
    for label, figure, top, bottom, key, minimum in OWN_RATIOS:
        row = {"scenario": label, "figure": figure}
        for s in own:
            a, b = med[s].get(top, {}).get(key), med[s].get(bottom, {}).get(key)
            if a and b:
                row[s] = round(a / b, 3)
        if own and own[0] in row:
            if minimum is not None:
                row |= {"target": f">= {minimum:g}", "met": row[own[0]] >= minimum}
            out.append(row)
    row = {"scenario": "memory-after-leave", "figure": "ours RSS growth %"}
    for s in own:
        growth = med[s].get("memory-after-leave", {}).get("rss_growth_pct")
        if isinstance(growth, int | float):
            row[s] = growth
    if own and own[0] in row:
        out.append(row | {"target": "<= 10", "met": row[own[0]] <= 10})
    return out


def table(result: dict[str, Any], servers: list[str]) -> str:
    head = ["scenario", "figure", *servers]
    if len(servers) > 1:
        head += [f"ratio {servers[0]}/{servers[1]}"]
    head += ["target", "met", "client cpu"]
    lines = [head]
    for row in result["rows"]:
        cpu = "/".join(fmt(row.get(f"{s}_client_cpu")) for s in servers)
        line = [row["scenario"], row["figure"], *(fmt(row.get(s)) for s in servers)]
        if len(servers) > 1:
            line.append(fmt(row.get("ratio")))
        met = {True: "yes", False: "NO"}.get(row.get("met"), "")  # type: ignore[arg-type]
        line += [row.get("target", ""), met, cpu]
        lines.append(line)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    errors = [
        f"  {s} {sc}: {m['error']}"
        for s in servers
        for sc, m in result["medians"].get(s, {}).items()
        if "error" in m
    ]
    skipped = sorted(
        {f"  {s}: {m['skipped']}" for s in servers for m in result["medians"].get(s, {}).values()
         if "skipped" in m}
    )  # fmt: skip
    notes = ["errors:", *errors] if errors else []
    notes += ["not run (— in the table), the cluster-* scenarios:", *skipped] if skipped else []
    return "\n".join(text + notes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for sc in SCENARIOS:
            print(f"{sc.name:20} {sc.about}")
        return 0
    scenarios = select(args.only or (CEILING_SCENARIOS if args.ceiling else None))
    if args.webhooks and any(sc.cluster for sc in scenarios):
        raise SystemExit("--webhooks: single-node scenarios only (leave out the cluster-* ones)")
    runs = args.runs or (1 if args.quick else 3)
    servers = ["sink"] if args.ceiling else ["ressonance"]
    commit = resolve(args.baseline) if args.baseline else None
    if commit:
        servers = list(AB)
    if args.against == "soketi":
        if not soketi_available():
            raise SystemExit(
                f"Soketi is not installed under {SOKETI_DIR}: see docs/benchmarks-soketi.md"
            )
        servers.append("soketi")
    loadgen.build()
    # SIGTERM unwinds like Ctrl-C, so the servers of the measurement in progress are killed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or REPO / "bench" / "results" / f"{stamp}.json"
    result: dict[str, Any] = {
        "started": stamp,
        "args": {
            "against": args.against,
            "runs": runs,
            "quick": args.quick,
            "ceiling": args.ceiling,
            "baseline": args.baseline,
            "webhooks": args.webhooks,
        },
        "machine": machine(),
        "versions": {},  # below, once the baseline is extracted
        "runs": {s: {sc.name: [] for sc in scenarios} for s in servers},
    }
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        # where each server runs from: args.src or the editable install, and the A/B baseline
        srcs = {s: args.src for s in servers}
        if commit:
            srcs["baseline"] = extract(commit, Path(tmp) / "baseline")
        result["versions"] = versions(args.src, servers, scenarios, commit)
        receiver, webhooks = (
            start_receiver(Path(tmp), args.webhooks) if args.webhooks else (None, None)
        )
        try:
            for r in range(runs):
                for sc in scenarios:
                    # interleave the servers, alternating which goes first
                    order = servers if r % 2 == 0 else servers[::-1]
                    for s in order:
                        m = measure(sc, s, args.quick, Path(tmp), srcs[s], webhooks)
                        result["runs"][s][sc.name].append(m)
                        shown = m.get("error") or m.get("skipped") or fmt(m.get(sc.main))
                        elapsed = time.monotonic() - t0
                        print(f"[{elapsed:6.0f}s] run {r + 1}/{runs} {sc.name:18} {s:10} "
                              f"{sc.main} = {shown}", file=sys.stderr, flush=True)  # fmt: skip
        finally:
            if receiver is not None:
                # what the servers posted, all runs together (a check that webhooks went out)
                result["webhooks"] = {
                    "mode": args.webhooks,
                    "servers": [s for s in servers if s in WEBHOOK_SERVERS],
                    "config": json.loads(webhooks or "[]"),
                    "received": stop_receiver(receiver, Path(tmp)),
                }
    result["seconds"] = round(time.monotonic() - t0, 1)
    result["medians"] = {
        s: {sc: medians(ms) for sc, ms in per.items()} for s, per in result["runs"].items()
    }
    result["rows"] = rows(result, servers)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result, servers))
    print(f"\nJSON: {out}")
    return 0
