"""Exit codes, the same for every command (listed in the README)."""

from __future__ import annotations

OK = 0
RUNTIME_ERROR = 1  # a provider failed, a run errored, an ID was not found
USAGE = 2  # bad arguments, a bad persona file, bad configuration
NEEDS_INPUT = 3  # the agent asked a question and no answer can be given
MAX_STEPS = 4  # the agent hit --max-steps
INTERRUPTED = 130  # Ctrl-C
# SIGTERM / SIGHUP (a closed terminal) end with 128 + the signal: 143 / 129 (the turn in flight
# is kept and logged as interrupted, as at Ctrl-C).


class CliError(Exception):
    """A failure shown as one line on stderr, with its exit code; never a traceback."""

    def __init__(self, message: str, code: int = RUNTIME_ERROR) -> None:
        super().__init__(message)
        self.code = code
