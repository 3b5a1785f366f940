"""Aggregating turn records: turns, tokens, cost, latency percentiles, fallback and error rates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from persona_runtime.turnlog.query import Record, parse_timestamp

__all__ = ["StatsRow", "percentile", "stats"]


@dataclass
class StatsRow:
    key: str
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Sum over priced turns only; ``unpriced`` counts the others.
    cost_cents: float = 0.0
    unpriced: int = 0
    #: Turns whose tokens (and cost) are our own count: the provider reported no usage.
    estimated: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    fallbacks: int = 0
    errors: int = 0
    interrupted: int = 0
    _latencies: list[float] = field(default_factory=list, repr=False, compare=False)

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.turns if self.turns else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.turns if self.turns else 0.0


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: an observed value, so p95 of a few turns is a real turn."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil without floats drifting
    return sorted_values[int(rank) - 1]


_GROUP_FIELDS = {"tier": "tier", "model": "model", "persona": "persona_id"}


def stats(records: Iterable[Record], by: str = "tier", *, total: bool = False) -> list[StatsRow]:
    """One row per group (``tier``/``model``/``persona``/``day``/``all``); with ``total``,
    a last row keyed ``"total"`` over everything."""
    if by not in ("tier", "model", "persona", "day", "all"):
        raise ValueError(f"cannot group by {by!r}: use tier, model, persona or day")
    field_name = _GROUP_FIELDS.get(by)
    groups: dict[str, StatsRow] = {}
    days: dict[str, str] = {}  # UTC minute -> local day: parsing every timestamp doubles the cost
    for record in records:
        if record.get("kind") == "undo":
            continue  # a note that a turn was taken back: no tokens, no cost, not a turn
        if field_name is not None:
            key = record.get(field_name)
            if not isinstance(key, str):
                key = "-" if key is None else str(key)
        elif by == "day":
            raw = record.get("timestamp")
            minute = raw[:16] if isinstance(raw, str) and raw.endswith("Z") else None
            key = days.get(minute) if minute is not None else None
            if key is None:
                ts = parse_timestamp(record)
                key = ts.astimezone().date().isoformat() if ts is not None else "-"
                if minute is not None:
                    days[minute] = key
        else:
            key = "all"
        row = groups.get(key)
        if row is None:
            row = groups[key] = StatsRow(key)
        _add(row, record)
    rows = list(groups.values())
    if by == "day":
        rows.sort(key=lambda r: r.key)
    else:
        rows.sort(key=lambda r: (-r.turns, r.key))
    if total:
        rows.append(_merge("total", rows))
    for row in rows:
        row._latencies.sort()
        row.latency_p50_ms = percentile(row._latencies, 50)
        row.latency_p95_ms = percentile(row._latencies, 95)
        row._latencies = []
    return rows


def _merge(key: str, rows: list[StatsRow]) -> StatsRow:
    merged = StatsRow(key)
    for row in rows:
        merged.turns += row.turns
        merged.prompt_tokens += row.prompt_tokens
        merged.completion_tokens += row.completion_tokens
        merged.cost_cents += row.cost_cents
        merged.unpriced += row.unpriced
        merged.estimated += row.estimated
        merged.fallbacks += row.fallbacks
        merged.errors += row.errors
        merged.interrupted += row.interrupted
        merged._latencies.extend(row._latencies)
    return merged


def _add(row: StatsRow, record: Record) -> None:
    row.turns += 1
    row.prompt_tokens += record.get("prompt_tokens") or 0
    row.completion_tokens += record.get("completion_tokens") or 0
    if record.get("usage_estimated") is True:
        row.estimated += 1
    cost = record.get("cost_cents")
    if cost is None:
        row.unpriced += 1
    else:
        row.cost_cents += cost
    latency = record.get("latency_ms")
    if isinstance(latency, (int, float)):
        row._latencies.append(float(latency))
    attempts = record.get("attempts")
    if attempts and len(attempts) > 1:
        row.fallbacks += 1
    status = record.get("status")
    if status == "error":
        row.errors += 1
    elif status == "interrupted":
        row.interrupted += 1
