"""Spend caps: a session's and a day's cost limit, checked before every model call.

* **Limits** (:class:`SpendLimits`): ``--max-cost USD`` / ``PERSONA_MAX_COST_PER_SESSION`` and
  ``PERSONA_MAX_COST_PER_DAY`` (the local calendar day), in cents like the TurnLog's ``cost_cents``.
* **The check** (:meth:`SpendCap.fits`): before each call, its worst case (the prompt's tokens
  times the input price plus the request's reply cap times the output price,
  :func:`worst_case_cents`) must fit in what is left of every limit.
* **Unpriced** models have no worst case: with a cap they are refused unless ``allow_unpriced``.
* **After the call** (:meth:`SpendCap.charge`) the reported cost is added; a call whose
  provider sent no usage (or that was cut off mid-stream) is charged its worst case, marked
  estimated, so the cap holds even then.
* **The day** starts from the TurnLog's own records for today (:meth:`SpendCap.from_turn_log`),
  read once when the session opens.

The engine (:mod:`persona_runtime.engine.engine`) makes every model call, so it is the one
caller: it reroutes a call that would cross the cap to the cheapest model that fits
(:class:`persona_runtime.events.SpendCapRerouted`) or refuses it (:class:`SpendCapReached`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from persona_runtime.pricing import cost_cents

if TYPE_CHECKING:

    from persona_runtime.engine.usage import Usage

__all__ = [
    "DAY_VAR",
    "SESSION_VAR",
    "SpendCap",
    "SpendCapReached",
    "SpendLimits",
    "day_spent_cents",
    "usd",
    "worst_case_cents",
]

SESSION_VAR = "PERSONA_MAX_COST_PER_SESSION"
DAY_VAR = "PERSONA_MAX_COST_PER_DAY"
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class SpendLimits:
    """Cost limits in cents (None: no limit)."""

    session_cents: float | None = None
    day_cents: float | None = None
    allow_unpriced: bool = False

    @property
    def active(self) -> bool:
        return self.session_cents is not None or self.day_cents is not None


class SpendCapReached(Exception):
    """No configured model can make this call within the cap; the turn (or agent run) stops."""

    def __init__(self, message: str, *, worst_case_cents: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.worst_case_cents = worst_case_cents


def usd(cents: float) -> str:
    """``$0.05`` for whole cents, ``$0.0123`` for a fraction of a cent below a dollar, ``$1.25`` from a dollar up."""
    dollars = cents / 100
    if abs(dollars) >= 1 or round(dollars, 2) == round(dollars, 6):
        return f"${dollars:,.2f}"
    return f"${dollars:.4f}"


def worst_case_cents(prompt_tokens: int, reply_cap: int, price: tuple[float, float] | None) -> float | None:
    """The most one request can cost: every prompt token, and a reply that uses its whole cap.
    None when the model is unpriced (unknown, never 0)."""
    return cost_cents(price, prompt_tokens, reply_cap)


def day_spent_cents(turn_log: Path, today: date | None = None) -> float:
    """The sum of ``cost_cents`` of the TurnLog's records of ``today`` (the local calendar day);
    unpriced records (None) add nothing known."""
    from persona_runtime.turnlog.query import LogFilter, iter_records, parse_timestamp

    day = today if today is not None else date.today()
    start = datetime(day.year, day.month, day.day).astimezone()
    total = 0.0
    for record in iter_records(turn_log, LogFilter(since=start)):
        ts = parse_timestamp(record)
        cost = record.get("cost_cents")
        if ts is not None and ts.astimezone().date() == day and isinstance(cost, int | float):
            total += float(cost)
    return round(total, 6)


class SpendCap:
    """What a session may still spend. Shared by every loop of the session (one ledger)."""

    def __init__(self, limits: SpendLimits, *, day_before_cents: float = 0.0) -> None:
        self.limits = limits
        #: What this session spent (reported costs, plus worst cases where none was reported).
        self.spent_cents = 0.0
        #: What the TurnLog already held for today when the session opened.
        self.day_before_cents = day_before_cents
        #: Some of ``spent_cents`` is a worst case, not a reported cost.
        self.estimated = False
        #: Calls made on unpriced models (``allow_unpriced``): their cost is unknown.
        self.unpriced_calls = 0

    @classmethod
    def from_turn_log(cls, limits: SpendLimits, turn_log: Path, today: date | None = None) -> SpendCap:
        before = day_spent_cents(turn_log, today) if limits.day_cents is not None else 0.0
        return cls(limits, day_before_cents=before)

    @property
    def active(self) -> bool:
        return self.limits.active

    @property
    def allow_unpriced(self) -> bool:
        return self.limits.allow_unpriced

    def headroom_cents(self) -> float | None:
        """What is left under the tightest limit (None: no limit)."""
        left: list[float] = []
        if self.limits.session_cents is not None:
            left.append(self.limits.session_cents - self.spent_cents)
        if self.limits.day_cents is not None:
            left.append(self.limits.day_cents - self.day_before_cents - self.spent_cents)
        return max(0.0, min(left)) if left else None

    def fits(self, worst: float | None) -> bool:
        """Whether a call that may cost ``worst`` cents (None: unpriced) is allowed now."""
        if not self.active:
            return True
        if worst is None:
            return self.allow_unpriced
        headroom = self.headroom_cents()
        return headroom is None or worst <= headroom + _EPSILON

    def charge(self, usage: Usage, worst: float | None) -> None:
        """Add one finished call: its reported cost; its worst case when nothing was reported."""
        if usage.cost_cents is None:
            self.unpriced_calls += 1
        elif worst is not None and (getattr(usage, "estimated", False) or usage.prompt_tokens == usage.completion_tokens == 0):
            self.charge_estimate(worst)  # no usage reported (or only an estimate of it): the worst case holds the cap
        else:
            self.spent_cents = round(self.spent_cents + usage.cost_cents, 6)

    def charge_estimate(self, worst: float | None) -> None:
        """A call whose cost is not known (cut off mid-stream, no usage): its worst case."""
        if worst is None:
            self.unpriced_calls += 1
            return
        self.spent_cents = round(self.spent_cents + worst, 6)
        self.estimated = True

    # -- words -------------------------------------------------------------------------------

    def binding(self) -> str:
        """The limit that leaves the least, in words: ``the $0.05 cap ($0.0412 spent)``."""
        session, day = self.limits.session_cents, self.limits.day_cents
        session_left = session - self.spent_cents if session is not None else None
        day_left = day - self.day_before_cents - self.spent_cents if day is not None else None
        if day is not None and (session_left is None or (day_left is not None and day_left < session_left)):
            return f"today's {usd(day)} cap ({usd(self.day_before_cents + self.spent_cents)} spent today)"
        return f"the {usd(session or 0.0)} cap ({usd(self.spent_cents)} spent)"

    def refusal(self, worst: float | None, label: str) -> str:
        """The one line a refused call ends its turn with."""
        if worst is None:
            return (
                f"{label} is unpriced (its cost is unknown) and a spend cap is set; no priced model fits "
                f"{self.binding()}: pass --allow-unpriced to use it, or raise the cap with --max-cost"
            )
        return (
            f"this turn could cost up to {usd(worst)} on {label}, over {self.binding()}, and no cheaper model "
            "fits; raise the cap with --max-cost (or PERSONA_MAX_COST_PER_SESSION / PERSONA_MAX_COST_PER_DAY)"
        )

    def summary(self) -> str:
        """``$0.0123 / $0.05`` (the toolbar and the agent's summary line)."""
        parts: list[str] = []
        mark = "~" if self.estimated else ""
        if self.limits.session_cents is not None:
            parts.append(f"{mark}{usd(self.spent_cents)} / {usd(self.limits.session_cents)}")
        if self.limits.day_cents is not None:
            today = self.day_before_cents + self.spent_cents
            parts.append(f"{mark}{usd(today)} / {usd(self.limits.day_cents)} today")
        text = " · ".join(parts)
        if self.unpriced_calls:
            text += f" (+{self.unpriced_calls} unpriced)"
        return text
