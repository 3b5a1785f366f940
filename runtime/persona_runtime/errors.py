"""The runtime's own errors. Provider faults stay persona-core's ``ProviderError``."""

from __future__ import annotations

__all__ = ["ConfigError", "RuntimeFault", "TierNotConfiguredError"]


class RuntimeFault(Exception):
    """Base for errors raised by persona_runtime."""


class ConfigError(RuntimeFault):
    """Bad configuration; ``variable`` names the environment variable at fault."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class TierNotConfiguredError(RuntimeFault):
    def __init__(self, requested: str, configured: tuple[str, ...]) -> None:
        super().__init__(f"tier {requested!r} is not configured (configured: {', '.join(configured) or 'none'})")
        self.requested = requested
        self.configured = configured
