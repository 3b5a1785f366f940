"""Agent runs: plan, act, ask, finish (see :mod:`persona_runtime.agentic.loop`).

Public names::

    AgenticLoop, CancelToken                      the loop and its cancel token
    Run, Step, StepToolCall, RunStatus, StepType  the saved records
    list_runs, find_run, RunNotFoundError         reading saved runs
    RunLock, RunBusyError                         one process per run (a killed run reads as abandoned)
    MarkerScanner, MarkerKind, classify           [ASK_USER] / [FINAL] detection
    events (module)                               the typed events; event_to_dict

Names are imported lazily so ``import persona_runtime.agentic`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from persona_runtime._lazy import lazy_exports

_EXPORTS = {
    "AgenticLoop": "persona_runtime.agentic.loop",
    "AGENT_INSTRUCTIONS": "persona_runtime.agentic.loop",
    "CancelToken": "persona_runtime.cancel",
    "Run": "persona_runtime.agentic.run",
    "RunBusyError": "persona_runtime.agentic.run",
    "RunLock": "persona_runtime.agentic.run",
    "RunNotFoundError": "persona_runtime.agentic.run",
    "RunStatus": "persona_runtime.agentic.run",
    "Step": "persona_runtime.agentic.run",
    "StepToolCall": "persona_runtime.agentic.run",
    "StepType": "persona_runtime.agentic.run",
    "find_run": "persona_runtime.agentic.run",
    "list_runs": "persona_runtime.agentic.run",
    "MarkerKind": "persona_runtime.agentic.markers",
    "MarkerScanner": "persona_runtime.agentic.markers",
    "ScanResult": "persona_runtime.agentic.markers",
    "classify": "persona_runtime.agentic.markers",
    "event_to_dict": "persona_runtime.agentic.events",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports('persona_runtime.agentic', _EXPORTS, globals())


if TYPE_CHECKING:
    from persona_runtime.cancel import CancelToken
    from persona_runtime.agentic.events import event_to_dict
    from persona_runtime.agentic.loop import AGENT_INSTRUCTIONS, AgenticLoop
    from persona_runtime.agentic.markers import MarkerKind, MarkerScanner, ScanResult, classify
    from persona_runtime.agentic.run import (
        Run,
        RunBusyError,
        RunLock,
        RunNotFoundError,
        RunStatus,
        Step,
        StepToolCall,
        StepType,
        find_run,
        list_runs,
    )
