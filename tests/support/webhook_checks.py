"""Checks of the webhook POSTs a :class:`~tests.support.receiver.Receiver` recorded: every
signature validated by the Pusher SDKs receivers use (the Python SDK's ``validate_webhook`` and
the Node SDK's ``webhook({headers, rawBody}).isValid()``, run by tests/e2e/js/
webhook_signature.mjs), the events per channel, and bounded waits on the event loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pusher

from tests.e2e.node_runner import E2E_DIR, JS_DIR, node_binary
from tests.support.receiver import Receiver, Request


async def until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` every 50 ms; the seconds it took (fails after ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def events_of(requests: list[Request], channel: str | None = None) -> list[dict[str, Any]]:
    """The events of ``requests`` (of ``channel``), in arrival order."""
    found = [e for r in requests for e in json.loads(r.body)["events"]]
    return [e for e in found if channel is None or e.get("channel") == channel]


def names_on(receiver: Receiver, channel: str) -> list[str]:
    """The names of the events of ``channel`` received so far, in arrival order."""
    return [e["name"] for e in events_of(receiver.requests, channel)]


def count_on(receiver: Receiver, channel: str) -> Counter[str]:
    return Counter(names_on(receiver, channel))


def unique_by_id(requests: list[Request]) -> list[Request]:
    """One request per ``webhook-id`` (the first), after checking that the requests sharing an
    id carry the same body (a retry, or a job posted again after a leader change)."""
    first: dict[str, Request] = {}
    for request in requests:
        (hook_id,) = request.header("webhook-id")
        if hook_id in first:
            assert first[hook_id].body == request.body, f"{hook_id}: two bodies"
        else:
            first[hook_id] = request
    return list(first.values())


def validate_python(app: dict[str, Any], requests: list[Request]) -> None:
    """Every request passes the Pusher Python SDK's ``validate_webhook``."""
    client = pusher.Pusher(app_id=app["id"], key=app["key"], secret=app["secret"])
    for request in requests:
        (key,) = request.header("X-Pusher-Key")
        (signature,) = request.header("X-Pusher-Signature")
        checked = client.validate_webhook(key, signature, request.body.decode())
        assert checked is not None and "events" in checked, request


def node_sdk_verdicts(key: str, secret: str, requests: list[dict[str, str]]) -> list[bool]:
    """``webhook({headers, rawBody}).isValid()`` of the Node SDK for each of ``requests``
    (``{"headers": {...}, "rawBody": "..."}``), run by tests/e2e/js/webhook_signature.mjs."""
    proc = subprocess.run(
        [node_binary(), str(JS_DIR / "webhook_signature.mjs")],
        input=json.dumps({"key": key, "secret": secret, "requests": requests}),
        cwd=E2E_DIR,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["scenario"] == "webhook_signature", result
    return [bool(v) for v in result["valid"]]


def validate_node(app: dict[str, Any], requests: list[Request]) -> None:
    """Every request passes the Node SDK's ``webhook({headers, rawBody}).isValid()``."""
    assert requests, "no request to validate"
    bodies = [
        {"headers": {k.lower(): v for k, v in r.headers}, "rawBody": r.body.decode()}
        for r in requests
    ]
    assert node_sdk_verdicts(app["key"], app["secret"], bodies) == [True] * len(requests)


def validate(app: dict[str, Any], receiver: Receiver) -> None:
    """Every POST the receiver recorded, checked by both SDKs."""
    validate_python(app, receiver.requests)
    validate_node(app, receiver.requests)
