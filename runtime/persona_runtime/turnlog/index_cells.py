"""Roll-ups in the turn-log index, so ``logs stats`` reads thousands of cells, not a million rows.

A *cell* holds the records of one log file that share persona, tier, model, provider/model,
status, fallback and UTC day: their count, token and cost sums, unpriced and estimated counts, and every
latency, sorted, as packed doubles. Stats filter and group cells; ``--since`` takes whole days
after it from the cells and the records of its own day from the ``records`` table, so the
answer is the scan's. Percentiles stay exact (nearest rank over the real values): each group's
latencies are merged and sorted, and the total's ranks are found across the sorted groups.

Cells are kept in step with ``records`` by :mod:`.index` (in the same transaction) and are
dropped with their file. Standard library only.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import struct
import time
from array import array
from collections.abc import Sequence
from typing import Any

from persona_runtime.turnlog.stats import StatsRow

__all__ = ["CELLS_SCHEMA", "DAY_US", "CellDeltas", "add_cell", "drop_cells", "kth", "local_days", "unpack"]

DAY_US = 86_400_000_000
CELLS_SCHEMA = (
    "CREATE TABLE cells(file INTEGER, key TEXT, persona, tier, model, provider_model, status, fallback INTEGER,"
    " day INTEGER, turns INTEGER, prompt INTEGER, completion INTEGER, cost REAL, unpriced INTEGER, estimated INTEGER,"
    " lat BLOB,"
    " PRIMARY KEY(file, key)) WITHOUT ROWID",
    "CREATE INDEX records_ts ON records(ts)",
)


class CellDeltas:
    """What new records add to their cells, merged into the table by :meth:`flush`."""

    def __init__(self) -> None:
        self._cells: dict[tuple[Any, ...], list[Any]] = {}

    def add(self, row: Sequence[Any]) -> None:
        """``row`` as :func:`persona_runtime.turnlog.index.row_of` makes it."""
        if row[9] == "undo":
            return  # an undo record (chat /undo) names a turn; stats leave it out, as the scan does
        ts, persona, tier, model, provider_model, status = row[3], row[4], row[5], row[6], row[7], row[8]
        key = (persona, tier, model, provider_model, status, row[17], ts // DAY_US if ts is not None else None)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = [0, 0, 0, 0.0, 0, [], 0]
        cell[0] += 1
        cell[1] += row[13]
        cell[2] += row[14]
        if row[15] is None:
            cell[4] += 1
        else:
            cell[3] += row[15]
        if row[16] is not None:
            cell[5].append(row[16])
        cell[6] += row[19]

    def flush(self, conn: sqlite3.Connection, file_id: int) -> None:
        for key, (turns, prompt, completion, cost, unpriced, lats, estimated) in self._cells.items():
            text = json.dumps(key)
            old = conn.execute("SELECT turns, prompt, completion, cost, unpriced, estimated, lat FROM cells WHERE file = ? AND key = ?",
                               (file_id, text)).fetchone()  # fmt: skip
            if old is not None:
                turns, prompt, completion = turns + old[0], prompt + old[1], completion + old[2]
                cost, unpriced, estimated = cost + old[3], unpriced + old[4], estimated + old[5]
                lats.extend(unpack(old[6]))
            lats.sort()
            conn.execute("INSERT OR REPLACE INTO cells VALUES (" + ", ".join("?" * 16) + ")",
                         (file_id, text, *key, turns, prompt, completion, cost, unpriced, estimated,
                          array("d", lats).tobytes()))  # fmt: skip
        self._cells.clear()


def drop_cells(conn: sqlite3.Connection, file_id: int) -> None:
    conn.execute("DELETE FROM cells WHERE file = ?", (file_id,))


def unpack(blob: bytes) -> array[float]:
    values = array("d")
    values.frombytes(blob)
    return values


def local_days(days: set[int]) -> dict[int, str] | None:
    """UTC day number -> the local date it falls on; None when a day straddles two local dates
    (a zone not at UTC+0): grouping cells by local day would then be wrong."""
    out: dict[int, str] = {}
    for day in days:
        first = time.strftime("%Y-%m-%d", time.localtime(day * 86_400))
        if time.strftime("%Y-%m-%d", time.localtime(day * 86_400 + 86_399)) != first:
            return None
        out[day] = first
    return out


def _ordered(value: float) -> int:
    """An integer that sorts as the float does (IEEE 754 bits, negatives flipped)."""
    bits = struct.unpack("<q", struct.pack("<d", value))[0]
    return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF) - 1


def _unordered(key: int) -> float:
    bits = key if key >= 0 else (-(key + 1)) | -0x8000_0000_0000_0000
    return float(struct.unpack("<d", struct.pack("<q", bits))[0])


def kth(lists: list[list[float]], k: int) -> float:
    """The ``k``-th smallest (1-based) value across sorted lists, without merging them."""
    lists = [values for values in lists if values]
    low, high = _ordered(min(v[0] for v in lists)), _ordered(max(v[-1] for v in lists))
    while low < high:
        middle = (low + high) // 2
        if sum(bisect.bisect_right(v, _unordered(middle)) for v in lists) >= k:
            high = middle
        else:
            low = middle + 1
    return _unordered(low)


def add_cell(row: StatsRow, turns: int, prompt: int, completion: int, cost: float, unpriced: int, status: Any,
             fallback: int, estimated: int = 0) -> None:  # fmt: skip
    row.turns += turns
    row.estimated += estimated
    row.prompt_tokens += prompt
    row.completion_tokens += completion
    row.cost_cents += cost
    row.unpriced += unpriced
    row.fallbacks += turns if fallback else 0
    row.errors += turns if status == "error" else 0
    row.interrupted += turns if status == "interrupted" else 0
