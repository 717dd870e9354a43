"""How the gateway serves the fleet: its router artifact, request log, shared state, access rules
and request limits (the ``router:``, ``request_log:``, ``state:``, ``access:`` and ``limits:``
sections)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from fleet.config.base import ConfigError, Strict
from fleet.config.embeddings import MAX_EMBEDDING_INPUTS

# The config's own defaults: nothing below the gateway uses them.
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_MESSAGES = 1024
DEFAULT_STATE_PREFIX = "smallfleet"
StateOnError = Literal["open", "closed"]
DEFAULT_STATE_ON_ERROR: StateOnError = "open"
DEFAULT_STATE_TIMEOUT = 0.25  # seconds per store operation
DEFAULT_STATE_POLL_INTERVAL = 0.5
STATE_URL_SCHEMES = ("redis://", "rediss://", "unix://")


class RouterConfig(Strict):
    artifact: str | None = None


class RequestLogConfig(Strict):
    """Where requests are logged; with no ``url`` the gateway's settings choose (gateway/settings.py:
    ``SMALLFLEET_DB_URL``, else SQLite in the state directory)."""

    url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql://...; default: SMALLFLEET_DB_URL, else SQLite in the "
        "state dir",
    )
    store_prompts: bool = Field(default=False, description="keep the prompt text (needed to retrain)")


def check_state_url(url: str, where: str) -> str:
    """A Redis URL (``redis://``, ``rediss://`` or ``unix://``); the message never echoes a password."""
    if not url.startswith(STATE_URL_SCHEMES):
        scheme = url.partition("://")[0] + "://" if "://" in url else repr(url.split("@")[-1][:40])
        raise ConfigError(f"{where}: expected a redis://, rediss:// or unix:// URL, got {scheme}")
    return url


class StateConfig(Strict):
    """The store every gateway replica shares (docs/deploy.md, "Several replicas")."""

    url: str | None = Field(
        default=None,
        repr=False,  # it may carry a password
        description="redis://host:port/db (or rediss://, unix://); default: SMALLFLEET_STATE_URL",
    )
    on_error: StateOnError = Field(
        default=DEFAULT_STATE_ON_ERROR,
        description="store unreachable: open = per-process limits, closed = 503 for keyed requests",
    )
    timeout: float = Field(
        default=DEFAULT_STATE_TIMEOUT, gt=0, le=10, description="seconds per store operation"
    )
    poll_interval: float = Field(
        default=DEFAULT_STATE_POLL_INTERVAL, gt=0, le=60,
        description="seconds between checks for new keys and router versions"
    )
    prefix: str = Field(
        default=DEFAULT_STATE_PREFIX, pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="key prefix"
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            return check_state_url(url, "url")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("url: ")) from None


class AccessConfig(Strict):
    """Who may do what without a key, and whose forwarded headers to believe (docs/security.md)."""

    admin_loopback: bool = Field(
        default=False,
        description="with no admin key set, let clients on this machine that reach the gateway "
        "directly (not through a proxy) use /admin/*",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks of proxies whose Forwarded / X-Forwarded-For are believed",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, entries: list[str]) -> list[str]:
        for index, entry in enumerate(entries):
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"[{index}] {entry!r} is not an IP address or network") from None
        return entries


class RequestLimitsConfig(Strict):
    """The fleet YAML's ``limits:``: how large one request may be. Per-key limits (rpm, tpm, budget)
    are gateway/keys.py's ``KeyLimits``; the ``max_tokens`` ceiling is ``SMALLFLEET_MAX_TOKENS``."""

    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    max_messages: int = Field(default=DEFAULT_MAX_MESSAGES, gt=0)
    max_embedding_inputs: int = Field(default=MAX_EMBEDDING_INPUTS, gt=0, description="texts per request")
