"""Run several real ``ressonance serve`` nodes on one broker (Redis or NATS) as a cluster.

:func:`run_cluster` starts the nodes (``--broker URL --node-id nI``), waits until each one has
heard from every other (:meth:`Cluster.wait_mesh`) and stops them all after. Nodes exchange their
state over the broker asynchronously, so every cross-node assertion polls with a deadline
(:meth:`Cluster.wait_until`); a failed wait reports what it last saw and every node's log.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from websockets.sync.client import ClientConnection, connect

from tests.support.rest import Rest
from tests.support.server import RunningServer, run_server

T = TypeVar("T")


class NotYet(AssertionError):
    """A cluster condition that did not hold before its deadline."""


@dataclass
class Cluster:
    broker: str
    nodes: list[RunningServer]

    def __getitem__(self, index: int) -> RunningServer:
        return self.nodes[index]

    @property
    def app(self) -> dict[str, Any]:
        return self.nodes[0].app

    # -- the HTTP API of one node ------------------------------------------------------------
    def call(
        self,
        index: int,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One signed request to node ``index`` on a fresh connection."""
        node = self.nodes[index]
        rest = Rest(node.host, node.port, node.app, timeout=5)
        try:
            return rest.request(method, path, body, params)
        finally:
            rest.close()

    def trigger(self, index: int, channel: str, event: str, data: Any, **extra: Any) -> Any:
        """Publish through node ``index``; the response body (fails on a status other than 200)."""
        text = data if isinstance(data, str) else json.dumps(data)
        body = {"name": event, "channel": channel, "data": text, **extra}
        status, answer = self.call(index, "POST", f"/apps/{self.app['id']}/events", body)
        assert status == 200, (status, answer)
        return answer

    def subscription_count(self, index: int, channel: str) -> int:
        """The cluster-wide subscription count of ``channel`` as node ``index`` reports it."""
        status, body = self.call(
            index,
            "GET",
            f"/apps/{self.app['id']}/channels/{channel}",
            params={"info": "subscription_count"},
        )
        assert status == 200, (status, body)
        return int(body.get("subscription_count", 0))

    def users(self, index: int, channel: str) -> list[str]:
        """The presence members of ``channel`` that node ``index`` reports, sorted."""
        status, body = self.call(index, "GET", f"/apps/{self.app['id']}/channels/{channel}/users")
        assert status == 200, (status, body)
        return sorted(str(u["id"]) for u in body["users"])

    # -- waiting -----------------------------------------------------------------------------
    def wait_until(
        self, probe: Callable[[], T], accept: Callable[[T], bool], timeout: float, what: str
    ) -> T:
        """Call ``probe`` until ``accept`` takes its value; raises :class:`NotYet` with the last
        value (or error) and the nodes' logs when ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                value = probe()
            except (OSError, AssertionError) as exc:  # a node restarting, a 500 while it settles
                last = exc
            else:
                if accept(value):
                    return value
                last = value
            if time.monotonic() >= deadline:
                raise NotYet(f"{what}: not within {timeout}s (last: {last!r})\n{self.logs()}")
            time.sleep(0.05)

    def wait_count(self, index: int, channel: str, count: int, timeout: float = 5) -> None:
        """Until node ``index`` reports ``count`` subscriptions to ``channel`` cluster-wide."""
        self.wait_until(
            lambda: self.subscription_count(index, channel),
            lambda n: n == count,
            timeout,
            f"node {index + 1} to count {count} subscriptions to {channel}",
        )

    def wait_users(self, index: int, channel: str, users: list[str], timeout: float = 5) -> None:
        """Until node ``index`` lists exactly ``users`` as the members of ``channel``."""
        self.wait_until(
            lambda: self.users(index, channel),
            lambda got: got == sorted(users),
            timeout,
            f"node {index + 1} to list {sorted(users)} on {channel}",
        )

    def wait_mesh(self, timeout: float = 10, indices: list[int] | None = None) -> None:
        """Until every node (of ``indices``) counts a subscription held on each of them: each
        has heard from all the others over the broker. The probe sockets are closed after."""
        indices = list(range(len(self.nodes))) if indices is None else indices
        channel = f"mesh-{secrets.token_hex(4)}"
        with contextlib.ExitStack() as stack:
            for i in indices:
                stack.enter_context(subscribed(self.nodes[i], channel))
            for i in indices:
                self.wait_count(i, channel, len(indices), timeout)

    def barrier(self, source: int, target: int, timeout: float = 5) -> None:
        """Until node ``target`` has seen every control message node ``source`` sent before
        this call (they arrive in order per sender): a subscription made on ``source`` now is
        counted on ``target``."""
        channel = f"barrier-{secrets.token_hex(4)}"
        with subscribed(self.nodes[source], channel):
            self.wait_count(target, channel, 1, timeout)

    # -- stopping nodes ----------------------------------------------------------------------
    def kill(self, index: int) -> None:
        """SIGKILL: the node says no goodbye; the others must notice its silence."""
        self._signal(index, signal.SIGKILL)

    def terminate(self, index: int) -> None:
        """SIGTERM: the node drains (4200 to its clients), says goodbye, exits."""
        self._signal(index, signal.SIGTERM)

    def _signal(self, index: int, signum: int) -> None:
        proc = self.nodes[index].process
        if proc.poll() is None:
            proc.send_signal(signum)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"node {index + 1} still runs after signal {signum}") from exc

    # -- logs ----------------------------------------------------------------------------------
    def logs(self) -> str:
        return "\n".join(
            f"--- node n{i + 1} (port {node.port}) log ---\n{node.log()}"
            for i, node in enumerate(self.nodes)
        )

    def assert_no_traceback(self) -> None:
        for i, node in enumerate(self.nodes):
            assert "Traceback" not in node.log(), f"node n{i + 1} logged a traceback\n{self.logs()}"


@contextlib.contextmanager
def subscribed(node: RunningServer, channel: str, timeout: float = 5) -> Iterator[ClientConnection]:
    """A plain (synchronous) WebSocket subscribed to the public ``channel`` on ``node``."""
    with connect(node.ws_url(), open_timeout=timeout, close_timeout=2) as ws:
        _expect(ws, "pusher:connection_established", timeout)
        ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
        _expect(ws, "pusher_internal:subscription_succeeded", timeout)
        yield ws


def _expect(ws: ClientConnection, event: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        frame = json.loads(ws.recv(timeout=left))
        if frame.get("event") == event:
            return
    raise TimeoutError(f"no {event} within {timeout}s")


def broker_args(broker: str, node_id: str) -> list[str]:
    return ["--broker", broker, "--node-id", node_id]


@contextlib.contextmanager
def run_cluster(
    tmp_dir: Path,
    broker: str,
    size: int = 3,
    apps: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    mesh_timeout: float = 10,
    regions: list[str] | None = None,
) -> Iterator[Cluster]:
    """``size`` nodes ``n1``..``nN`` on ``broker``, each on its own free port (``regions``: the
    ``--region`` of each), all able to reach the others when this yields; all stopped after
    (SIGTERM, then SIGKILL). ``settings`` may be a function, called once per node (settings
    that must differ, such as an admin port)."""
    with contextlib.ExitStack() as stack:
        nodes = [
            stack.enter_context(
                run_server(
                    tmp_dir,
                    apps,
                    settings() if callable(settings) else settings,
                    env=env,
                    args=[
                        *broker_args(broker, f"n{i}"),
                        *(["--region", regions[i - 1]] if regions else []),
                    ],
                )
            )
            for i in range(1, size + 1)
        ]
        cluster = Cluster(broker, nodes)
        cluster.wait_mesh(mesh_timeout)
        yield cluster
