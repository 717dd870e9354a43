"""The gateway's settings from the environment, read once: :meth:`Settings.from_environ` at the start
of ``smallfleet serve`` (and of ``train --from-log`` / ``--reload-url``, and the Ray Serve ingress);
:func:`gateway.app.create_app` reads them itself only when it is given none. No other module of
the gateway reads ``os.environ``; everything else comes from the fleet config (fleet/config/).

=========================  ==============================================================================
Variable                   Meaning
=========================  ==============================================================================
``SMALLFLEET_API_KEYS``    comma list of ``KEY`` or ``NAME:KEY``; with none, ``/v1/`` answers local
                           clients only (or anyone with ``--insecure-no-auth``); gateway/keys.py
``SMALLFLEET_KEY_LIMITS``  JSON ``{"*": {"rpm": 60}, "ID": {"tpm": ..., "budget": ...}}``: per-key limits
``SMALLFLEET_ADMIN_KEYS``  comma list of admin keys for ``/admin/*``; ``train --reload-url`` sends the first
``SMALLFLEET_ADMIN_KEY``   deprecated: one admin key, read only while ``SMALLFLEET_ADMIN_KEYS`` is unset
                           (with a warning)
``SMALLFLEET_MAX_TOKENS``  a ceiling on ``max_tokens`` (and ``max_output_tokens``) for every model
``SMALLFLEET_DB_URL``      the request log's database when the fleet config's ``request_log.url`` is unset
``SMALLFLEET_STATE_URL``   the Redis replicas share when the fleet config's ``state.url`` is unset
``SMALLFLEET_STATE``       the state directory (default ``~/.local/state/smallfleet``): the SQLite request
                           log lives there when no database is named
=========================  ==============================================================================

Read below the gateway, which may not import this module (one read point each):

=========================  ==============================================================================
``SMALLFLEET_CACHE``       where assembled multi-part GGUFs are kept (default ``~/.cache/smallfleet``);
                           backends/gguf_store.py ``cache_dir()``
a model's ``api_key_env``  the variable a fleet config names for an openai model's (or embedding
                           model's) key; fleet/members.py ``model_api_key()``
=========================  ==============================================================================

Not settings: fleet/sandbox.py hands a benchmark's sandboxed program only ``PATH`` and ``LANG``;
router/distill.py (a one-off) sets ``HF_HUB_OFFLINE``. Tests read ``SMALLFLEET_SOAK_SECONDS``,
``SMALLFLEET_REDIS_SERVER`` and ``SMALLFLEET_PG_BINDIR``; Grafana's provisioning reads
``SMALLFLEET_GRAFANA_DASHBOARDS`` (docs/observability.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleet.config import RequestLogConfig, StateConfig, check_state_url

API_KEYS_ENV = "SMALLFLEET_API_KEYS"
KEY_LIMITS_ENV = "SMALLFLEET_KEY_LIMITS"
ADMIN_KEYS_ENV = "SMALLFLEET_ADMIN_KEYS"
DEPRECATED_ADMIN_KEY_ENV = "SMALLFLEET_ADMIN_KEY"  # one key; SMALLFLEET_ADMIN_KEYS replaces it
MAX_TOKENS_ENV = "SMALLFLEET_MAX_TOKENS"
DB_URL_ENV = "SMALLFLEET_DB_URL"
STATE_URL_ENV = "SMALLFLEET_STATE_URL"
STATE_DIR_ENV = "SMALLFLEET_STATE"

__all__ = [
    "ADMIN_KEYS_ENV",
    "API_KEYS_ENV",
    "DB_URL_ENV",
    "DEPRECATED_ADMIN_KEY_ENV",
    "KEY_LIMITS_ENV",
    "MAX_TOKENS_ENV",
    "STATE_DIR_ENV",
    "STATE_URL_ENV",
    "Settings",
    "default_state_dir",
]


def default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "smallfleet"


@dataclass(frozen=True, slots=True)
class Settings:
    """The values of the variables above. Key lists and limits stay text here: gateway/keys.py
    parses them where they are used (``KeyStore.from_settings``, gateway/access.py's
    ``admin_key_store``), so a malformed one is reported as before."""

    api_keys: str = field(default="", repr=False)  # secrets
    key_limits: str = ""
    admin_keys: str = field(default="", repr=False)
    deprecated_admin_key: str = field(default="", repr=False)
    max_tokens: int | None = None
    db_url: str | None = field(default=None, repr=False)  # may carry a password
    state_url: str | None = field(default=None, repr=False)
    state_dir: Path = field(default_factory=default_state_dir)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The settings ``environ`` holds; a malformed ``SMALLFLEET_MAX_TOKENS`` is a ValueError."""
        max_tokens = environ.get(MAX_TOKENS_ENV, "").strip()
        if max_tokens and (not max_tokens.isdigit() or int(max_tokens) < 1):
            raise ValueError(f"{MAX_TOKENS_ENV} must be a positive integer, got {max_tokens!r}")
        state_dir = environ.get(STATE_DIR_ENV)
        return cls(
            api_keys=environ.get(API_KEYS_ENV, ""),
            key_limits=environ.get(KEY_LIMITS_ENV, ""),
            admin_keys=environ.get(ADMIN_KEYS_ENV, ""),
            deprecated_admin_key=environ.get(DEPRECATED_ADMIN_KEY_ENV, ""),
            max_tokens=int(max_tokens) if max_tokens else None,
            db_url=environ.get(DB_URL_ENV) or None,
            state_url=environ.get(STATE_URL_ENV, "").strip() or None,
            state_dir=Path(state_dir) if state_dir else default_state_dir(),
        )

    # -- where state lives -----------------------------------------------------------------------
    def request_log_url(self, config: RequestLogConfig) -> str:
        """The configured URL, else ``SMALLFLEET_DB_URL``, else SQLite in the state directory
        (made if missing)."""
        if config.url:
            return config.url
        if self.db_url:
            return self.db_url
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.state_dir / 'requests.db'}"

    def state_store_url(self, config: StateConfig) -> str | None:
        """The configured URL, else ``SMALLFLEET_STATE_URL``, else None (state per process); a
        variable that is not a Redis URL is a ConfigError naming it."""
        if config.url:
            return config.url
        return check_state_url(self.state_url, STATE_URL_ENV) if self.state_url else None
