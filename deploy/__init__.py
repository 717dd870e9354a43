"""Running smallfleet beyond one process: Ray Serve (``deploy.rayserve``) and helpers for the Helm chart."""
