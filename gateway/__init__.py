"""smallfleet's HTTP gateway: OpenAI's API in front of a fleet of backends."""

from __future__ import annotations

from fleet.config import ConfigError, FleetConfig, default_fleet, load_fleet
from gateway.app import create_app

__all__ = ["ConfigError", "FleetConfig", "create_app", "default_fleet", "load_fleet"]
