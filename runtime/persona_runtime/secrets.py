"""Keep secrets out of logs, events and error messages.

Every string that leaves the runtime towards a log, a TurnLog, an event or the
screen goes through :func:`redact`. It removes the values of secret-looking
environment variables (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*PASSWORD*``)
and anything shaped like a provider key.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

__all__ = ["add_secrets", "redact", "secret_values"]

_SECRET_NAME = re.compile(r"(API_KEY|_TOKEN|SECRET|PASSWORD|_KEY)$|PASSWORD", re.IGNORECASE)
# Provider key shapes: sk-..., sk-ant-..., gsk_..., nvapi-..., hf_..., Bearer tokens.
_KEY_SHAPES = re.compile(
    r"(sk-(?:ant-|proj-|or-)?[A-Za-z0-9_\-*]{8,}|gsk_[A-Za-z0-9]{8,}|nvapi-[A-Za-z0-9_\-]{8,}"
    r"|hf_[A-Za-z0-9]{8,}|(?<=Bearer )[A-Za-z0-9._\-]{8,})"
)
_MIN_SECRET_LEN = 6
REDACTED = "[redacted]"
#: Values known to be secret from configuration (``mcp.json`` header and env values).
_registered: tuple[str, ...] = ()


def add_secrets(values: tuple[str, ...] | list[str]) -> None:
    """Redact these values everywhere from now on (e.g. the header values of ``mcp.json``)."""
    global _registered
    fresh = {v for v in values if len(v.strip()) >= _MIN_SECRET_LEN} | set(_registered)
    _registered = tuple(sorted(fresh, key=len, reverse=True))


def secret_values(env: dict[str, str] | None = None) -> tuple[str, ...]:
    """Values of secret-looking variables, longest first (so overlaps redact fully)."""
    source = os.environ if env is None else env
    return _secret_values(tuple(sorted(source.items())))


@lru_cache(maxsize=8)
def _secret_values(items: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    values = {v.strip() for k, v in items if _SECRET_NAME.search(k) and len(v.strip()) >= _MIN_SECRET_LEN}
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """Return ``text`` with every known secret and key-shaped token replaced."""
    if not text:
        return text
    for value in (*extra, *_registered, *secret_values()):
        if value and value in text:
            text = text.replace(value, REDACTED)
        # Providers echo a masked key ("sk-...abcd", "****abcd"): drop the visible tail too.
        if len(value) > 8:
            text = re.sub(r"(?<=[*.])" + re.escape(value[-4:]), "****", text)
    return _KEY_SHAPES.sub(REDACTED, text)
