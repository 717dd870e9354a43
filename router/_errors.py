"""The router's error tree.

RouterError
 +-- ArtifactError   a router artifact is missing, corrupt, or does not match this code
 +-- DataError       training or evaluation input is malformed
 +-- RoutingError    a routing request cannot be satisfied (e.g. no known candidate)
"""

from __future__ import annotations


class RouterError(Exception):
    """Base class of every error the router package raises on purpose."""


class ArtifactError(RouterError):
    """A router artifact is missing, corrupt, or incompatible."""


class DataError(RouterError):
    """Training or evaluation data is malformed."""


class RoutingError(RouterError, ValueError):
    """A routing request cannot be satisfied."""
