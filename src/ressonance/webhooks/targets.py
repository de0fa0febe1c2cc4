"""Where a webhook is posted: the URL's host resolved once, and checked (docs/webhooks.md,
"Private targets").

A webhook set through the management API is a tenant's: unless
``webhooks_allow_private_targets`` is set, it may not reach the operator's own network. The
check is made at delivery time, on the addresses the host resolves to (a public name can be
pointed at 127.0.0.1 at any time), and refuses loopback, private (RFC 1918, ULA fc00::/7),
link-local (169.254/16 with the 169.254.169.254 metadata service, fe80::/10), unspecified,
multicast, reserved, shared (100.64/10) and any other non-global address, the same inside an
IPv6 address that embeds an IPv4 one (IPv4-mapped, 6to4, Teredo, NAT64), and the cloud metadata
names, before any look-up.

:func:`resolve` returns the one address to connect to, and the sender connects to exactly that
address (no second look-up, so no DNS rebinding between the check and the connection) while it
sends ``Host:`` and checks TLS (SNI and certificate) against the URL's host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from ressonance.errors import RessonanceError

RESOLVE_TIMEOUT = 3.0  # seconds for the DNS look-up (the whole attempt has 5 s)
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(RessonanceError):
    """The webhook may not be posted to this URL (final: a retry would be refused again)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unresolved(RessonanceError):
    """The host could not be resolved now (worth a retry)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Target:
    """One resolved webhook URL."""

    tls: bool  # https
    host: str  # the URL's host name (no brackets): TLS SNI and certificate check
    host_header: str  # ``Host:``: the host as written in the URL, with its port if given
    port: int
    path: str  # path and query, percent-encoded where the URL was not
    address: str  # the IP address to connect to


def forbidden(address: IPAddress) -> str | None:
    """Why a tenant's webhook may not reach ``address``, or None when it is a global one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if address.teredo is not None:
            embedded = address.teredo[1]
        if address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return forbidden(embedded)
        if address.is_site_local:  # fec0::/10, deprecated but routable inside a site
            return "private"
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return kind
    return None if address.is_global else "non-global"


def _split(url: str) -> tuple[bool, str, str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused("the webhook URL is not valid") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("the webhook URL is not an http(s) URL with a host")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise Refused("the webhook URL's host is not a valid name") from exc
    tls = parts.scheme == "https"
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE)
    host_header = f"[{host}]" if ":" in host else host
    if port is not None:
        host_header += f":{port}"
    return tls, host, host_header, port or (443 if tls else 80), path


async def resolve(url: str, allow_private: bool) -> Target:
    """Resolve ``url``'s host; raise :class:`Refused` when the URL is not usable or every
    address is one a tenant may not reach (unless ``allow_private``), :class:`Unresolved`
    when the look-up fails or takes longer than :data:`RESOLVE_TIMEOUT`."""
    tls, host, host_header, port, path = _split(url)
    if not allow_private and host.rstrip(".").lower() in METADATA_NAMES:
        raise Refused("private target refused: a cloud metadata host")
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise Unresolved("dns: timeout") from exc
    except (OSError, UnicodeError) as exc:
        raise Unresolved("dns: host not found") from exc
    reasons = []
    for info in infos:
        address = str(info[4][0])
        reason = None if allow_private else forbidden(ipaddress.ip_address(address))
        if reason is None:
            return Target(tls, host, host_header, port, path, address)
        reasons.append(reason)
    if not reasons:
        raise Unresolved("dns: no address")
    raise Refused(f"private target refused: the host is a {reasons[0]} address")
