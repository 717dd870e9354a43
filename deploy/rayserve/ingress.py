"""The ingress replica: the same gateway app as ``smallfleet serve``, over Ray handles.

Routing, metrics, the request log, auth and SSE are the gateway's own: models deployed on
Ray become :class:`~backends.ray_handle.RayHandleBackend` backends of the fleet; any other
fleet model (e.g. ``backend: openai`` in front of vLLM) is called directly as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.config import FleetConfig, LlamaCppModel


class GatewayIngress:
    """Becomes a Serve ingress in ``build_app``; Serve calls ``__serve_build_asgi_app__`` in the replica."""

    def __init__(
        self, fleet: FleetConfig, handles: Mapping[str, Any], *, insecure_no_auth: bool = False
    ) -> None:
        self.fleet = fleet
        self.handles = dict(handles)
        self.insecure_no_auth = insecure_no_auth

    def __serve_build_asgi_app__(self) -> Any:
        from backends.ray_handle import RayHandleBackend
        from gateway.access import AccessPolicy, admin_key_store, parse_networks
        from gateway.app import create_app
        from gateway.auth import API_KEYS_ENV, KeyStore
        from gateway.settings import Settings

        settings = Settings.from_environ()
        keys = KeyStore.from_settings(settings)
        if not keys and not self.insecure_no_auth:
            raise RuntimeError(f"set {API_KEYS_ENV} (runtime_env env_vars), or args.insecure_no_auth: true")
        backends = {}
        for model in self.fleet.models:
            if model.name in self.handles:
                context = model.context_length if isinstance(model, LlamaCppModel) else None
                backends[model.name] = RayHandleBackend(
                    model.name, self.handles[model.name], context_length=context
                )
        access = AccessPolicy(
            keyless="anyone" if self.insecure_no_auth else "local",
            admin_loopback=self.fleet.access.admin_loopback,
            trusted_proxies=parse_networks(self.fleet.access.trusted_proxies, "access.trusted_proxies"),
        )
        return create_app(
            self.fleet,
            backends=backends,
            api_keys=keys,
            admin_keys=admin_key_store(settings),
            access=access,
            settings=settings,
        )
