"""``[ASK_USER]`` and ``[FINAL]``: finding the step markers in streamed model text.

A marker is ``[`` + a name + ``]``. The name is ``ASK_USER`` or ``FINAL`` in any case, with
any whitespace, ``_``, ``-`` or ``*`` inside the brackets (``[ ask user ]``, ``[**Final**]``).
It may be wrapped in markdown emphasis (``**[FINAL]**``, ``_[FINAL]_``, up to three ``*``
or ``_``), the brackets may be backslash-escaped (``\\[FINAL\\]``, as some models write them)
and a ``:`` may follow. The *first* marker in a reply decides its kind; the text before it
is thinking, the text after it the payload (the answer or the question).

:class:`MarkerScanner` is fed the stream's deltas. It hands back thinking text as soon as
it can no longer be part of a marker and payload text as it arrives, holding back only the
few characters that might still turn out to be a marker (or closing emphasis), so a marker
split across any number of deltas is found exactly as in the joined text.
:func:`classify` is the one-shot form.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = ["MarkerKind", "MarkerScanner", "ScanResult", "classify"]


class MarkerKind(StrEnum):
    NONE = "none"
    ASK_USER = "ask_user"
    FINAL = "final"


_NAMES = {"askuser": MarkerKind.ASK_USER, "final": MarkerKind.FINAL}
_EMPHASIS = "*_"
_INNER_FILLER = " \t\r\n_-*"
_MAX_EMPHASIS = 3
_MAX_INNER = 32  # characters between the brackets; longer is not a marker
_STARTS = frozenset("*_\\[")

_Status = Literal["match", "partial", "none"]


@dataclass(frozen=True, slots=True)
class ScanResult:
    kind: MarkerKind
    #: Text before the marker (all the text when there is none), stripped.
    thinking: str
    #: Text after the marker, stripped ("" when there is no marker).
    payload: str


def _marker_at(text: str, start: int, *, final: bool) -> tuple[_Status, int, MarkerKind, str]:
    """Is there a marker at ``start``? ``partial`` means "maybe, once more text arrives".

    Returns (status, end, kind, opening emphasis); ``end`` is just past the marker and, when
    the closing emphasis could not be matched right after it, the opening emphasis is
    returned so the payload's trailing emphasis can be dropped at the end.
    """
    n = len(text)
    i = start
    # Opening emphasis: up to three of one emphasis character.
    if i < n and text[i] in _EMPHASIS:
        char = text[i]
        while i < n and text[i] == char and i - start < _MAX_EMPHASIS:
            i += 1
    emphasis = text[start:i]
    if i < n and text[i] == "\\":
        i += 1
    if i >= n:
        return ("none" if final else "partial"), i, MarkerKind.NONE, emphasis
    if text[i] != "[":
        return "none", i, MarkerKind.NONE, emphasis
    i += 1
    letters = ""
    inner_start = i
    while True:
        if i >= n:
            return ("none" if final else "partial"), i, MarkerKind.NONE, emphasis
        if i - inner_start > _MAX_INNER:
            return "none", i, MarkerKind.NONE, emphasis
        c = text[i]
        if c in _INNER_FILLER:
            i += 1
            continue
        if c == "\\" or c == "]":
            if c == "\\":
                if i + 1 >= n:
                    return ("none" if final else "partial"), i, MarkerKind.NONE, emphasis
                if text[i + 1] != "]":
                    return "none", i, MarkerKind.NONE, emphasis
                i += 1
            kind = _NAMES.get(letters)
            if kind is None:
                return "none", i, MarkerKind.NONE, emphasis
            i += 1
            break
        if not c.isascii() or not c.isalpha():
            return "none", i, MarkerKind.NONE, emphasis
        letters += c.lower()
        if not any(name.startswith(letters) for name in _NAMES):
            return "none", i, MarkerKind.NONE, emphasis
        i += 1
    # Closing emphasis, the same as the opening one.
    if emphasis:
        tail = text[i : i + len(emphasis)]
        if tail == emphasis:
            i += len(emphasis)
            emphasis = ""
        elif emphasis.startswith(tail) and not final:
            return "partial", i, kind, emphasis  # "**[FINAL]*" + "*": wait for the rest
    # An optional colon, possibly after spaces.
    j = i
    while j < n and text[j] in " \t":
        j += 1
    if j < n and text[j] == ":":
        i = j + 1
    elif j >= n and not final:
        return "partial", i, kind, emphasis
    return "match", i, kind, emphasis


class MarkerScanner:
    """Incremental marker detection over stream deltas.

    ``feed(delta)`` returns ``(thinking, payload)``: the text that is now known to be
    thinking, and payload text that followed the marker. ``finish()`` flushes what was
    held back and returns the same pair. ``kind`` is set the moment the marker is seen.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._pos = 0  # everything before this was emitted (or was the marker)
        self.kind = MarkerKind.NONE
        self._payload_started = False
        self._dangling = ""  # opening emphasis not closed right after the marker
        self._thinking: list[str] = []
        self._payload: list[str] = []
        self._finished = False

    @property
    def text(self) -> str:
        """Everything fed so far."""
        return self._buf

    def feed(self, delta: str) -> tuple[str, str]:
        if self._finished:
            raise RuntimeError("MarkerScanner.feed() after finish()")
        if not delta:
            return "", ""
        self._buf += delta
        return self._advance(final=False)

    def finish(self) -> tuple[str, str]:
        if self._finished:
            return "", ""
        pair = self._advance(final=True)
        self._finished = True
        return pair

    def result(self) -> ScanResult:
        """The classification of everything fed (call after ``finish()``)."""
        payload = "".join(self._payload).strip()
        thinking = "".join(self._thinking).strip()
        return ScanResult(kind=self.kind, thinking=thinking, payload=payload)

    # -- internals -----------------------------------------------------------------------

    def _advance(self, *, final: bool) -> tuple[str, str]:
        thinking = ""
        if self.kind is MarkerKind.NONE:
            thinking = self._scan_thinking(final=final)
        payload = self._take_payload(final=final) if self.kind is not MarkerKind.NONE else ""
        if thinking:
            self._thinking.append(thinking)
        if payload:
            self._payload.append(payload)
        return thinking, payload

    def _scan_thinking(self, *, final: bool) -> str:
        buf = self._buf
        start = self._pos
        i = start
        n = len(buf)
        while i < n:
            if buf[i] in _STARTS:
                status, end, kind, dangling = _marker_at(buf, i, final=final)
                if status == "match":
                    self.kind = kind
                    self._dangling = dangling
                    self._pos = end
                    return buf[start:i]
                if status == "partial":
                    self._pos = i
                    return buf[start:i]
            i += 1
        self._pos = n
        return buf[start:n]

    def _take_payload(self, *, final: bool) -> str:
        buf = self._buf
        start = self._pos
        if not self._payload_started:
            while start < len(buf) and buf[start].isspace():
                start += 1
            self._pos = start
            if start >= len(buf):
                return ""
            self._payload_started = True
        end = len(buf)
        if self._dangling:
            # Hold back a trailing run of the dangling emphasis character: it may close the
            # emphasis that opened before the marker ("**[FINAL] Use DuckDB.**").
            char = self._dangling[0]
            k = end
            while k > start and buf[k - 1] == char:
                k -= 1
            if final:
                if buf[k:end] == self._dangling:
                    end = k
            else:
                end = k
        self._pos = end if not final else len(buf)
        return buf[start:end]


def classify(text: str) -> ScanResult:
    """Classify a complete reply: (kind, thinking, payload)."""
    scanner = MarkerScanner()
    scanner.feed(text)
    scanner.finish()
    return scanner.result()
