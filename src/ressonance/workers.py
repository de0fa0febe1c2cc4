"""``serve --workers N``: N processes share one port (SO_REUSEPORT) and coordinate through the
configured broker, each as its own cluster node (docs/cluster.md "All cores of a host").

The parent only supervises: it forwards SIGTERM/SIGINT (each worker drains with 4200) and
restarts a worker that dies unexpectedly. A worker that fails within its first seconds (the
port is taken, the configuration cannot work) stops them all, so a broken setup exits instead of
restarting forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable

from ressonance.config import Settings
from ressonance.libc import libc

log = logging.getLogger("ressonance.workers")

EARLY_FAILURE = 3.0  # seconds: a worker that exits sooner than this is not restarted
RESTART_DELAY = 1.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (even by SIGKILL), so no orphan
    keeps serving on the shared port beside a new instance. Elsewhere it just outlives a
    killed parent."""
    prctl = getattr(libc(), "prctl", None)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _spawn(settings: Settings, index: int, run: Callable[[Settings], None]) -> int:
    # SIGTERM/SIGINT are held during the fork: the child must not run the parent's handler
    # (it would signal its siblings) before it has put back the defaults
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return pid
    for sig in STOP_SIGNALS:  # the worker's loop installs its own handlers
        signal.signal(sig, signal.SIG_DFL)
    _die_with_parent()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    code = 0
    try:
        # ``workers`` stays as set: the worker listens with SO_REUSEPORT because of it
        # one admin listener for the host: worker 0's; its dashboard and cluster figures
        # cover every worker through the broker (docs/observability.md "With --workers")
        admin_port = settings.admin_port if index == 0 else 0
        node_id = f"{settings.node_id}-{index}"
        run(dataclasses.replace(settings, node_id=node_id, admin_port=admin_port))
    except OSError as exc:
        log.error("worker %d cannot listen on %s:%s: %s", index, settings.host, settings.port, exc)
        code = 1
    except BaseException:  # a worker must never fall back into the parent's code
        log.exception("worker %d failed", index)
        code = 1
    os._exit(code)


def supervise(settings: Settings, run: Callable[[Settings], None]) -> int:
    """Run ``settings.workers`` workers until SIGTERM/SIGINT; the exit status of the group."""
    stopping = False
    status = 0

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            _signal(pid, signum)

    workers: dict[int, tuple[int, float]] = {}  # pid → (index, started)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(1, settings.workers + 1):
        if stopping:  # a signal during start-up: start no more
            break
        workers[_spawn(settings, index, run)] = (index, time.monotonic())
    log.info("started %d workers on port %s", settings.workers, settings.port)
    while workers:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries os.wait
            continue
        index, started = workers.pop(pid, (0, 0.0))
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping or not index:
            continue
        if time.monotonic() - started < EARLY_FAILURE:
            log.error("worker %d exited at once (status %d): stopping all workers", index, code)
            status = 1
            stop(signal.SIGTERM, None)
            continue
        log.warning("worker %d exited (status %d): restarting it", index, code)
        time.sleep(RESTART_DELAY)
        if not stopping:  # a SIGTERM during the delay: nothing to restart
            workers[_spawn(settings, index, run)] = (index, time.monotonic())
    return status


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
