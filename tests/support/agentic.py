"""Shared set-up for AgenticLoop tests: a test persona, a toolbox of plain async functions,
ScriptedBackend tiers, a loop writing to a temporary runs dir, and event collection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persona.backends.types import ToolSpec
from persona.schema.persona import Persona
from persona.schema.tools import ToolCall, ToolResult
from persona_runtime.agentic import AgenticLoop, Run
from persona_runtime.agentic import events as ev
from persona_runtime.testing import ScriptedBackend
from persona_runtime.tier import TierConfig, TierRegistry
from persona_runtime.turnlog import MemoryTurnLogWriter

PERSONA = Persona.model_validate(
    {
        "persona_id": "tester",
        "identity": {"name": "Tess", "role": "test agent", "background": "Exists to be tested."},
        "tools": ["calculator", "file_write"],
    }
)


class FakeToolbox:
    """A toolbox whose tools are plain async functions; records every dispatch."""

    def __init__(self, **tools: Any) -> None:
        self.tools = tools
        self.dispatched: list[ToolCall] = []

    def names(self) -> list[str]:
        return sorted(self.tools)

    def get_specs(self) -> list[ToolSpec]:
        return [ToolSpec(name=n, description=f"the {n} tool", parameters={"type": "object"}) for n in self.names()]

    async def dispatch(self, call: ToolCall) -> ToolResult:
        self.dispatched.append(call)
        if call.name not in self.tools:
            from persona.tools.errors import ToolNotAllowedError

            raise ToolNotAllowedError("tool not allowed", context={"called": call.name})
        content = await self.tools[call.name](**call.args)
        return ToolResult(tool_name=call.name, call_id=call.call_id, content=str(content))


async def calculator(expression: str) -> str:
    return str(eval(expression, {"__builtins__": {}}))  # noqa: S307 - test input only


def tiers(**backends: ScriptedBackend) -> TierRegistry:
    return TierRegistry([TierConfig.from_backend(name, b) for name, b in backends.items()])


def make_loop(registry: TierRegistry, tmp_path: Path, **kw: Any) -> tuple[AgenticLoop, MemoryTurnLogWriter]:
    log = MemoryTurnLogWriter()
    kw.setdefault("toolbox", FakeToolbox(calculator=calculator))
    loop = AgenticLoop(persona=PERSONA, tiers=registry, turn_log=log, runs_dir=tmp_path / "runs", **kw)
    return loop, log


async def collect(loop: AgenticLoop, task: str | None = "Find x", **kw: Any) -> list[Any]:
    return [e async for e in loop.run(task, **kw)]


def final_run(events: list[Any]) -> Run:
    assert isinstance(events[-1], ev.RunFinished), events[-1]
    assert sum(isinstance(e, ev.RunFinished) for e in events) == 1
    return events[-1].run
