"""The WebSocket opening handshake (transport/handshake.py, RFC 6455 §4.2): every refusal with
its status, a valid upgrade, the 101 response and the headers of a refusal."""

from __future__ import annotations

import pytest

from ressonance.errors import HttpError
from ressonance.exchange import Request
from ressonance.transport import handshake
from ressonance.transport.handshake import Upgrade, check, refusal_headers
from ressonance.transport.http11 import serialize

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
HEADERS = {
    "host": "example.com",
    "upgrade": "websocket",
    "connection": "Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": RFC_KEY,
}


def upgrade_request(
    method: str = "GET",
    path: str = "/app/app-key",
    query: str = "",
    changes: dict[str, str | None] | None = None,
    **header_changes: str | None,
) -> Request:
    """An upgrade request; ``changes`` replace headers (``sec_websocket_key=...``), None drops."""
    headers = dict(HEADERS)
    for name, value in {**(changes or {}), **header_changes}.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return Request(method, path, query, headers, upgrade=True)


def refused(request: Request) -> tuple[int, str]:
    with pytest.raises(HttpError) as info:
        check(request)
    return info.value.status, info.value.message


def test_the_rfc_example_key_is_accepted() -> None:
    assert check(upgrade_request()) == Upgrade("app-key", None, None, RFC_ACCEPT)


def test_protocol_and_origin_are_read() -> None:
    request = upgrade_request(
        query="protocol=7&client=js&version=8.4.0", origin="https://example.com"
    )
    assert check(request) == Upgrade("app-key", "7", "https://example.com", RFC_ACCEPT)


def test_header_values_are_matched_loosely() -> None:
    """Upgrade in any case, Connection as a token list, spaces around the key and version."""
    request = upgrade_request(
        upgrade="WebSocket",
        connection="keep-alive, Upgrade",
        sec_websocket_version=" 13 ",
        sec_websocket_key=f" {RFC_KEY} ",
    )
    assert check(request).accept == RFC_ACCEPT


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "get"])
def test_a_method_other_than_get_is_405(method: str) -> None:
    assert refused(upgrade_request(method=method)) == (405, "WebSocket upgrades use GET")


@pytest.mark.parametrize("path", ["/app/", "/app/key/extra", "/app//"])
def test_a_path_without_one_key_is_404(path: str) -> None:
    assert refused(upgrade_request(path=path)) == (404, "Path not found: use /app/{key}")


@pytest.mark.parametrize(
    "changes",
    [
        {"upgrade": None},
        {"upgrade": "h2c"},
        {"connection": None},
        {"connection": "keep-alive"},
        {"connection": "upgraded"},
    ],
)
def test_a_request_that_is_not_an_upgrade_is_426(changes: dict[str, str | None]) -> None:
    assert refused(upgrade_request(changes=changes)) == (
        426,
        "This endpoint needs a WebSocket upgrade",
    )


@pytest.mark.parametrize("version", [None, "8", "12", "14", "13, 8"])
def test_a_version_other_than_13_is_426(version: str | None) -> None:
    assert refused(upgrade_request(sec_websocket_version=version)) == (
        426,
        "Unsupported Sec-WebSocket-Version: use 13",
    )


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "not base64!",
        "dGhlIHNhbXBsZSBub25j",  # 15 bytes
        "dGhlIHNhbXBsZSBub25jZTEx",  # 17 bytes
        "dGhlIHNhbXBsZSBub25jZQ",  # padding missing
    ],
)
def test_a_missing_or_invalid_key_is_400(key: str | None) -> None:
    assert refused(upgrade_request(sec_websocket_key=key)) == (
        400,
        "Missing or invalid Sec-WebSocket-Key",
    )


def test_the_checks_run_in_order_method_path_upgrade_version_key() -> None:
    """A request wrong in every way gets the first refusal."""
    bad: dict[str, str | None] = {
        "upgrade": None,
        "sec_websocket_version": None,
        "sec_websocket_key": None,
    }
    assert refused(upgrade_request("POST", "/app/", changes=bad))[0] == 405
    assert refused(upgrade_request("GET", "/app/", changes=bad))[0] == 404
    assert refused(upgrade_request("GET", "/app/k", changes=bad))[0] == 426
    assert refused(upgrade_request("GET", "/app/k", sec_websocket_key=None))[0] == 400


def test_the_101_response() -> None:
    response = handshake.response(check(upgrade_request()))
    assert (response.status, response.body) == (101, b"")
    assert response.headers == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", RFC_ACCEPT),
    ]
    assert serialize(response, keep_alive=True) == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("status", "headers"),
    [(426, [("Sec-WebSocket-Version", "13")]), (400, []), (404, []), (405, [])],
)
def test_only_a_426_tells_the_supported_version(
    status: int, headers: list[tuple[str, str]]
) -> None:
    assert refusal_headers(HttpError(status, "no")) == headers


def test_websocket_paths() -> None:
    assert handshake.is_websocket_path("/app/key")
    assert not handshake.is_websocket_path("/apps/1/events")
    assert not handshake.is_websocket_path("/app")
