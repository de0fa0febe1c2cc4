"""Webhook requests signed by Ressonance (:func:`ressonance.webhooks.signing.headers_for`)
checked by the validators receivers really use: the Python SDK's ``validate_webhook``, the Node
SDK's ``webhook(req).isValid()`` and the Standard Webhooks library (``standardwebhooks``) with
the ``whsec_`` secret docs/webhooks.md tells receivers to use. A tampered body, another key or
another secret is refused by each."""

from __future__ import annotations

import json
import time

import pusher
import pytest
import standardwebhooks

from ressonance.webhooks.base import Job
from ressonance.webhooks.signing import headers_for, receiver_secret
from tests.support.webhook_checks import node_sdk_verdicts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

APP_ID, KEY, SECRET = "1001", "app-key", "app-secret-ç"


def signed(secret: str = SECRET, key: str = KEY) -> tuple[dict[str, str], bytes]:
    """Headers (lower-case names, as a receiver's framework gives them) and body of a job."""
    event = {"name": "client_event", "channel": "private-chat", "event": "client-typing"}
    event["data"] = json.dumps({"text": "olá, São Paulo ✓"}, ensure_ascii=False)
    body = json.dumps(
        {"time_ms": int(time.time() * 1000), "events": [event]}, ensure_ascii=False
    ).encode()
    job = Job(
        id="msg_" + "0f" * 16,
        app_id=APP_ID,
        url="https://receiver.example/pusher",
        order_key=f"{APP_ID}:private-chat",
        body=body,
        events=("client_event",),
        headers=(("X-Team", "realtime"),),
    )
    headers = {name.lower(): value for name, value in headers_for(job, key, secret, time.time())}
    assert headers["x-team"] == "realtime"
    return headers, body


def tampered(body: bytes) -> bytes:
    return body.replace("São".encode(), b"Rio")


def python_sdk_accepts(headers: dict[str, str], body: bytes) -> bool:
    sdk = pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET)
    result = sdk.validate_webhook(
        key=headers["x-pusher-key"], signature=headers["x-pusher-signature"], body=body.decode()
    )
    return result is not None


def test_the_python_sdk_validates_the_signature_and_refuses_a_tampered_body() -> None:
    headers, body = signed()
    assert python_sdk_accepts(headers, body)
    assert not python_sdk_accepts(headers, tampered(body))
    assert not python_sdk_accepts(*signed(secret="another-secret"))
    assert not python_sdk_accepts(*signed(key="another-key"))


def test_the_node_sdk_validates_the_signature_and_refuses_a_tampered_body() -> None:
    headers, body = signed()
    requests = [
        {"headers": headers, "rawBody": body.decode()},
        {"headers": headers, "rawBody": tampered(body).decode()},
    ]
    for other in (signed(secret="another-secret"), signed(key="another-key")):
        requests.append({"headers": other[0], "rawBody": other[1].decode()})
    assert node_sdk_verdicts(KEY, SECRET, requests) == [True] + [False] * 3


def test_standard_webhooks_verifies_with_whsec_and_the_app_secret() -> None:
    headers, body = signed()
    secret = receiver_secret(SECRET)
    assert secret.startswith("whsec_")
    receiver = standardwebhooks.Webhook(secret)
    assert receiver.verify(body, headers)["events"][0]["name"] == "client_event"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        receiver.verify(tampered(body), headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(receiver_secret("another-secret")).verify(body, headers)
    stale = {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        receiver.verify(body, stale)
