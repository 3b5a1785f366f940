"""The runtime's own errors. Provider faults stay persona-core's ``ProviderError``."""

from __future__ import annotations

__all__ = ["ConfigError", "DataDirError", "PersonaFileError", "RuntimeFault", "SetupError", "TierNotConfiguredError"]


class RuntimeFault(Exception):
    """Base for errors raised by persona_runtime."""


class SetupError(RuntimeFault):
    """A session cannot start: bad configuration, persona file or data directory. The message
    is one line that says what to fix (the CLI prints it and exits 2)."""


class ConfigError(SetupError):
    """Bad configuration; ``variable`` names the environment variable at fault."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class PersonaFileError(SetupError):
    """The persona file is missing, unreadable, not YAML or not a valid persona."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class DataDirError(SetupError):
    """The data directory (``PERSONA_HOME``) cannot be created or written."""


class TierNotConfiguredError(RuntimeFault):
    def __init__(self, requested: str, configured: tuple[str, ...]) -> None:
        super().__init__(f"tier {requested!r} is not configured (configured: {', '.join(configured) or 'none'})")
        self.requested = requested
        self.configured = configured
