"""The one interface every router implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from persona_runtime.routing.types import RoutingContext, RoutingDecision

__all__ = ["Router"]


@runtime_checkable
class Router(Protocol):
    """Picks the tier (and model) for one turn. Must never build a backend."""

    def route(self, context: RoutingContext) -> RoutingDecision: ...
