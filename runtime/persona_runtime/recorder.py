"""Subscribers to the typed event stream, and the TurnLog as one of them.

A loop publishes every event it yields (and, when its consumer goes away mid-turn, the
finishing event it can no longer yield) to its subscribers, the way a smolagents monitor
watches steps. :class:`TurnLogRecorder` writes the record a ``TurnFinished`` or
``StepFinished`` carries, so the UI and the log read the same stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["EventBus", "Subscriber", "TurnLogRecorder"]

Subscriber = Callable[[Any], None]
E = TypeVar("E")


class EventBus:
    def __init__(self, subscribers: Sequence[Subscriber] = (), *, turn_log: Any = None) -> None:
        """``turn_log``: a TurnLog writer, subscribed through a :class:`TurnLogRecorder`."""
        self._subscribers = list(subscribers)
        if turn_log is not None:
            self._subscribers.append(TurnLogRecorder(turn_log))
        self._failures: list[str] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; returns a function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def publish(self, event: E) -> E:
        """Hand ``event`` to every subscriber. A subscriber that cannot write (a full disk, a
        log path that is a directory) never breaks the turn: the fault is kept for the UI."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except OSError as exc:
                self._failures.append(f"{exc.strerror or type(exc).__name__}: {getattr(exc, 'filename', None) or exc}")
        return event

    def take_failures(self) -> list[str]:
        """What subscribers could not do since the last call (then forgotten)."""
        failures, self._failures = self._failures, []
        return failures


class TurnLogRecorder:
    """Writes each finished chat turn's and agent step's TurnLog: the events that carry one
    (``TurnFinished`` and ``StepFinished``) have a ``log``; no other event does."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def __call__(self, event: Any) -> None:
        log = getattr(event, "log", None)  # cheap for the text deltas that make up most events
        if log is not None:
            self.writer.write(log)
