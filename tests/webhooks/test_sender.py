"""One webhook attempt against real sockets on 127.0.0.1: a tiny asyncio receiver records each
request and answers the status the test chooses (or nothing at all); TLS with a throwaway CA
made here with ``cryptography``; the private-target check on real look-ups."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ressonance.protocol.signatures import webhook_signature
from ressonance.webhooks.base import ATTEMPT_TIMEOUT, Job
from ressonance.webhooks.sender import USER_AGENT, Outcome, Sender
from ressonance.webhooks.signing import standard_signature
from ressonance.webhooks.targets import Refused, resolve
from tests.support.receiver import Receiver

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]

KEY, SECRET = "app-key", "app-secret"
WAIT = 5.0


def job(url: str, headers: tuple[tuple[str, str], ...] = ()) -> Job:
    body = json.dumps(
        {"time_ms": int(time.time() * 1000), "events": [{"name": "channel_occupied"}]}
    ).encode()
    return Job(
        id="msg_" + "ab" * 16,
        app_id="1",
        url=url,
        order_key="1:ch",
        body=body,
        events=("channel_occupied",),
        headers=headers,
    )


async def post(url: str, allow_private: bool = True, **kw: object) -> tuple[Outcome, Job]:
    the_job = job(url, **kw)  # type: ignore[arg-type]
    outcome = await asyncio.wait_for(Sender().post(the_job, KEY, SECRET, allow_private), 8)
    return outcome, the_job


async def test_2xx_is_delivered_with_signed_headers_and_the_exact_body(receiver: Receiver) -> None:
    receiver.status = 204
    before = int(time.time())
    outcome, sent = await post(f"http://127.0.0.1:{receiver.port}/hooks/pusher?x=1 2")
    assert outcome == Outcome("delivered", "204")
    (request,) = receiver.requests
    assert request.line == "POST /hooks/pusher?x=1%202 HTTP/1.1"
    assert request.body == sent.body
    assert request.header("Host") == [f"127.0.0.1:{receiver.port}"]
    assert request.header("Content-Type") == ["application/json"]
    assert request.header("X-Pusher-Key") == [KEY]
    assert request.header("X-Pusher-Signature") == [webhook_signature(SECRET, sent.body)]
    assert request.header("webhook-id") == [sent.id]
    (timestamp,) = request.header("webhook-timestamp")
    assert before <= int(timestamp) <= time.time()
    assert request.header("webhook-signature") == [
        standard_signature(sent.id, int(timestamp), sent.body, SECRET)
    ]
    assert request.header("Connection") == ["close"]
    assert request.header("User-Agent") == [USER_AGENT]
    assert request.header("Content-Length") == [str(len(sent.body))]


@pytest.mark.parametrize("status", [503, 500, 429, 408])
async def test_5xx_429_and_408_are_retried(receiver: Receiver, status: int) -> None:
    receiver.status = status
    outcome, _ = await post(f"http://127.0.0.1:{receiver.port}/")
    assert outcome == Outcome("retry", str(status))
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [404, 400, 401, 410])
async def test_other_4xx_are_final(receiver: Receiver, status: int) -> None:
    receiver.status = status
    outcome, _ = await post(f"http://127.0.0.1:{receiver.port}/")
    assert outcome == Outcome("final", str(status))


async def test_a_redirect_is_final_and_not_followed(receiver: Receiver) -> None:
    receiver.status = 302
    outcome, _ = await post(f"http://127.0.0.1:{receiver.port}/")
    assert outcome.kind == "final"
    assert outcome.reason.startswith("302")
    assert len(receiver.requests) == 1


async def test_connection_refused_is_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome, _ = await post(f"http://127.0.0.1:{port}/")
    assert outcome == Outcome("retry", "connection refused")


async def test_a_receiver_that_never_answers_is_a_timeout_after_the_attempt_bound(
    receiver: Receiver,
) -> None:
    receiver.status = None
    start = time.monotonic()
    outcome, _ = await post(f"http://127.0.0.1:{receiver.port}/")
    elapsed = time.monotonic() - start
    assert outcome == Outcome("retry", "timeout")
    assert ATTEMPT_TIMEOUT - 0.1 <= elapsed < ATTEMPT_TIMEOUT + 1.5
    assert len(receiver.requests) == 1


async def test_a_peer_that_is_not_http_is_retried() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    try:
        outcome, _ = await post(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)
    assert outcome.kind == "retry"
    assert outcome.reason.startswith("bad response")


async def test_the_webhooks_headers_come_after_ours_and_never_replace_them(
    receiver: Receiver,
) -> None:
    theirs = (
        ("X-Pusher-Signature", "forged"),
        ("webhook-id", "forged"),
        ("Content-Type", "text/plain"),
        ("host", "internal.example"),
        ("Content-Length", "1"),
        ("User-Agent", "forged"),
        ("X-Smuggle", "a\r\nX-Injected: yes"),
        ("Authorization", "Bearer t0ken"),
        ("X-Team", "realtime"),
    )
    outcome, sent = await post(f"http://127.0.0.1:{receiver.port}/", headers=theirs)
    assert outcome.kind == "delivered"
    (request,) = receiver.requests
    assert request.header("X-Pusher-Signature") == [webhook_signature(SECRET, sent.body)]
    assert request.header("webhook-id") == [sent.id]
    assert request.header("Content-Type") == ["application/json"]
    assert request.header("Host") == [f"127.0.0.1:{receiver.port}"]
    assert request.header("Content-Length") == [str(len(sent.body))]
    assert request.header("User-Agent") == [USER_AGENT]
    assert request.header("X-Smuggle") == request.header("X-Injected") == []
    names = [name.lower() for name, _ in request.headers]
    assert names.index("authorization") > names.index("webhook-signature")
    assert request.header("Authorization") == ["Bearer t0ken"]
    assert request.header("X-Team") == ["realtime"]


# -- private targets --------------------------------------------------------------------------

PRIVATE = [
    "http://127.0.0.1/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://[::1]/",
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[2002:a00:1::1]/",  # 6to4 of 10.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://localhost:8080/",
]


@pytest.mark.parametrize("url", PRIVATE)
async def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(Refused, match="private target refused"):
        await resolve(url, allow_private=False)
    target = await resolve(url, allow_private=True)
    expected = {"127.0.0.1", "::1"} if target.host == "localhost" else {target.host}
    assert target.address in expected


async def test_the_metadata_name_is_refused_without_a_lookup() -> None:
    with pytest.raises(Refused, match="metadata"):
        await resolve("http://metadata.google.internal./computeMetadata/v1/", False)


@pytest.mark.parametrize("url", ["http://8.8.8.8/", "https://[2606:4700:4700::1111]/"])
async def test_public_addresses_are_allowed(url: str) -> None:
    target = await resolve(url, allow_private=False)
    assert ipaddress.ip_address(target.address).is_global


async def test_resolve_keeps_the_urls_host_for_host_and_tls() -> None:
    target = await resolve("https://localhost:8443/a/b?c=d", allow_private=True)
    assert target.tls and target.port == 8443 and target.path == "/a/b?c=d"
    assert target.host == "localhost" and target.host_header == "localhost:8443"
    assert ipaddress.ip_address(target.address).is_loopback
    v6 = await resolve("http://[::1]/", allow_private=True)
    assert (v6.host_header, v6.port, v6.address, v6.path) == ("[::1]", 80, "::1", "/")


async def test_a_refused_private_target_is_final_and_nothing_is_sent(receiver: Receiver) -> None:
    for host in ("127.0.0.1", "localhost"):
        outcome, _ = await post(f"http://{host}:{receiver.port}/", allow_private=False)
        assert outcome.kind == "final"
        assert "private target refused" in outcome.reason
    assert receiver.requests == []


async def test_a_name_that_does_not_resolve_is_retried() -> None:
    outcome, _ = await post("http://no-such-host.invalid/")
    assert outcome == Outcome("retry", "dns: host not found")


async def test_a_url_that_is_not_http_is_final() -> None:
    outcome, _ = await post("ftp://127.0.0.1/")
    assert outcome.kind == "final"


# -- TLS ----------------------------------------------------------------------------------------


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def throwaway_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for ``localhost`` it signed: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Ressonance test CA"))
        .issuer_name(_name("Ressonance test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest_asyncio.fixture
async def tls_receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, Path]]:
    ca, cert, key = throwaway_ca(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    r = Receiver()
    await r.start(tls=server_ctx)
    yield r, ca
    await r.close()


async def test_https_checks_the_certificate_against_the_urls_host(
    tls_receiver: tuple[Receiver, Path],
) -> None:
    receiver, ca = tls_receiver
    trusting = Sender(ssl_context=ssl.create_default_context(cafile=str(ca)))
    sent = job(f"https://localhost:{receiver.port}/tls")
    outcome = await asyncio.wait_for(trusting.post(sent, KEY, SECRET, True), 8)
    assert outcome == Outcome("delivered", "200")
    (request,) = receiver.requests
    assert request.header("Host") == [f"localhost:{receiver.port}"]
    assert request.body == sent.body
    assert receiver.sni == ["localhost"]
    # the certificate names localhost, not 127.0.0.1: refused even with the CA trusted
    by_ip = job(f"https://127.0.0.1:{receiver.port}/tls")
    outcome = await asyncio.wait_for(trusting.post(by_ip, KEY, SECRET, True), 8)
    assert outcome.kind == "retry"
    assert outcome.reason.startswith("tls: certificate verify failed (")
    assert "mismatch" in outcome.reason.lower()


async def test_https_with_a_ca_the_system_does_not_trust_is_retried_with_the_reason(
    tls_receiver: tuple[Receiver, Path],
) -> None:
    receiver, _ = tls_receiver
    outcome, _ = await post(f"https://localhost:{receiver.port}/")
    assert outcome.kind == "retry"
    assert outcome.reason == (
        "tls: certificate verify failed (unable to get local issuer certificate)"
    )
    assert receiver.requests == []
