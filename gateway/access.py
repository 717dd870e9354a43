"""Who a request comes from, and what it may do without a key (docs/security.md).

The gateway decides two things by a client's address, and only these two:

- with no API key configured, ``smallfleet serve`` on a loopback address answers only
  **local** clients: on this machine, talking to the gateway directly;
- with no admin key configured, the admin endpoints answer local clients only when told to
  (``access: {admin_loopback: true}`` or ``smallfleet serve --admin-loopback``), and nobody
  otherwise.

"Directly" is the point. A reverse proxy or sidecar on the same machine connects from
127.0.0.1 for every client it forwards, so the peer address alone would make everyone local.
A request is therefore local only when its peer is a loopback address *and* it carries no
forwarded header (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``), which proxies add. A
forwarded header's *value* is believed only from a peer in ``access.trusted_proxies``: then the
client is the address the proxies say (the nearest one they do not vouch for), and the request
is still never local, since it came through a proxy. A proxy that adds no such header cannot be
told from a local client: put one in front only with API and admin keys set.

:func:`origin` reads a request's scope; :class:`AccessPolicy` holds the settings.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from starlette.types import Scope

from gateway.keys import KeyStore, split_key_entry
from gateway.settings import ADMIN_KEYS_ENV, DEPRECATED_ADMIN_KEY_ENV, Settings

logger = logging.getLogger("smallfleet")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-real-ip")

__all__ = [
    "DEPRECATED_ADMIN_KEY_ENV",
    "AccessPolicy",
    "Origin",
    "admin_key_store",
    "admin_secret",
    "origin",
    "parse_networks",
]


def parse_networks(entries: Iterable[str], where: str) -> tuple[IPNetwork, ...]:
    """Addresses or CIDR blocks (``10.0.0.0/8``, ``::1``); a bad one is a ValueError naming it."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{where}: {entry!r} is not an IP address or network") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from, as far as the gateway can tell."""

    address: IPAddress | None  # the client: the peer, or what trusted proxies say; None if unknown
    proxied: bool  # it came through a proxy (a trusted one, or any that added a forwarded header)

    @property
    def local(self) -> bool:
        """A client on this machine talking to the gateway directly."""
        return not self.proxied and self.address is not None and self.address.is_loopback


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """``keyless``: who is answered while no API key is configured (``local``: what ``smallfleet
    serve`` allows on a loopback address; ``anyone``: ``--insecure-no-auth``). ``admin_loopback``:
    with no admin key, whether local clients may use ``/admin/*``. ``trusted_proxies``: peers
    whose forwarded headers are believed."""

    keyless: Literal["local", "anyone"] = "local"
    admin_loopback: bool = False
    trusted_proxies: tuple[IPNetwork, ...] = ()

    def trusts(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self.trusted_proxies)

    def origin(self, scope: Scope) -> Origin:
        return origin(scope, self)


@functools.lru_cache(maxsize=4096)  # parsed once per address: a keyless gateway asks on every request
def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` nodes of an RFC 7239 ``Forwarded`` header, nearest proxy last."""
    nodes = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, node = pair.strip().partition("=")
            if name.strip().lower() == "for":
                node = node.strip().strip('"')
                if node.startswith("["):  # "[2001:db8::1]:4711"
                    node = node[1:].partition("]")[0]
                elif node.count(":") == 1:  # "192.0.2.43:47011"
                    node = node.partition(":")[0]
                nodes.append(node)
    return nodes


def _chain(headers: Mapping[bytes, str]) -> list[str] | None:
    """The forwarded client chain (the original client first), or None without forwarded headers."""
    if b"forwarded" in headers:
        return _forwarded_for(headers[b"forwarded"])
    if b"x-forwarded-for" in headers:
        return [part.strip() for part in headers[b"x-forwarded-for"].split(",") if part.strip()]
    if b"x-real-ip" in headers:
        return [headers[b"x-real-ip"].strip()]
    return None


def origin(scope: Scope, policy: AccessPolicy) -> Origin:
    """The origin of the request ``scope`` describes, under ``policy``'s trusted proxies."""
    client = scope.get("client")
    peer = _address(client[0]) if client else None
    headers: dict[bytes, str] = {}
    for name, value in scope.get("headers", ()):
        if name in FORWARDED_HEADERS:  # repeated headers are one list, in order
            text = value.decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
    chain = _chain(headers)
    if chain is None:
        return Origin(peer, proxied=policy.trusts(peer))  # a trusted proxy that says nothing: unknown
    if not policy.trusts(peer):
        return Origin(peer, proxied=True)  # someone's proxy: its headers prove it, their values do not
    address: IPAddress | None = None
    for node in reversed(chain):  # nearest first: the first hop the trusted proxies do not vouch for
        address = _address(node)
        if not policy.trusts(address):
            break
    return Origin(address, proxied=True)


def admin_key_store(settings: Settings) -> KeyStore:
    """The admin keys: ``SMALLFLEET_ADMIN_KEYS``; the older ``SMALLFLEET_ADMIN_KEY`` (one key) is
    still read when that is unset, with a deprecation warning."""
    if not settings.admin_keys.strip() and settings.deprecated_admin_key.strip():
        logger.warning(
            "%s is deprecated: set %s (a comma list) instead", DEPRECATED_ADMIN_KEY_ENV, ADMIN_KEYS_ENV
        )
        return KeyStore([settings.deprecated_admin_key])
    return KeyStore(settings.admin_keys.split(","))


def admin_secret(settings: Settings) -> str | None:
    """The admin key a client (``smallfleet train --reload-url``) sends: the first of
    ``SMALLFLEET_ADMIN_KEYS`` (``NAME:KEY`` entries give their KEY), else the deprecated
    ``SMALLFLEET_ADMIN_KEY`` with a warning; None when neither is set."""
    for entry in settings.admin_keys.split(","):
        if entry.strip():
            return split_key_entry(entry.strip())[1]
    legacy = settings.deprecated_admin_key.strip()
    if legacy:
        logger.warning("%s is deprecated: set %s instead", DEPRECATED_ADMIN_KEY_ENV, ADMIN_KEYS_ENV)
        return legacy
    return None
