"""smallfleet on Ray Serve: one deployment per fleet model, and the gateway as the ingress.

``build_app`` (in :mod:`deploy.rayserve.app`) is the application builder that
``serve run deploy/ray/serve_config.yaml`` imports. Nothing here imports Ray at import time.
"""

from __future__ import annotations

from deploy.rayserve.app import AppArgs, build_app
from deploy.rayserve.ingress import GatewayIngress
from deploy.rayserve.model import ModelServer

__all__ = ["AppArgs", "GatewayIngress", "ModelServer", "build_app"]
