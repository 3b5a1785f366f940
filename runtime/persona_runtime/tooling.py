"""Running one tool call, the same way for chat turns and agent steps.

Every fault is contained and becomes an error result the model (and the person) can
read: a hallucinated or disallowed tool, a tool that raises, a tool that hangs (bounded
by ``timeout_s``), a declined approval, arguments that were not JSON, and a result too
large to send back (cut at ``max_chars``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from persona_runtime.secrets import redact

if TYPE_CHECKING:
    from persona.schema.tools import ToolCall, ToolResult

__all__ = [
    "DECLINED", "SIDE_EFFECT_TOOLS", "THREADED_TOOLS", "ToolApprover", "ToolRun", "error_result", "inject_skill", "needs_approval",
    "run_tool_call",
]

#: Tools that write or send something; the CLI asks before running them.
SIDE_EFFECT_TOOLS = frozenset({"file_write", "web_fetch", "web_search", "send_email", "mcp_call"})
#: persona-core's local tools, which block inside ``async def``: each call gets its own thread.
THREADED_TOOLS = frozenset(
    {"file_read", "file_write", "text_diff", "json_query", "regex_match", "calculator", "datetime"}
)
DECLINED = "The person declined to run this tool call. Do not retry it; continue without it."
ToolApprover = Callable[["ToolCall"], Awaitable[bool]]


def needs_approval(toolbox: Any, name: str) -> bool:
    """Whether a call to ``name`` asks the person first. A toolbox may decide per tool
    (``needs_approval(name)``: an MCP tool asks unless its server marks it read-only);
    otherwise the tools that write or send ask."""
    decide = getattr(toolbox, "needs_approval", None)
    if decide is not None:
        return bool(decide(name))
    return name in SIDE_EFFECT_TOOLS and name in toolbox.names()


def error_result(call: ToolCall, content: str) -> ToolResult:
    from persona.schema.tools import ToolResult

    return ToolResult(tool_name=call.name, call_id=call.call_id, content=content, is_error=True)


@dataclass(frozen=True)
class ToolRun:
    result: ToolResult
    approved: bool
    #: Time the person took to answer the approval question (0 when none was asked).
    approval_ms: float = 0.0


async def run_tool_call(
    toolbox: Any,
    call: ToolCall,
    *,
    approve: ToolApprover | None,
    timeout_s: float,
    max_chars: int,
    guard: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None,
) -> ToolRun:
    """Run ``call``. ``guard`` wraps awaits (e.g. a cancel token)."""
    from persona.schema.tools import truncated_tool_call_message

    wrap = guard or (lambda awaitable: awaitable)
    approved, approval_ms = True, 0.0
    if not call.truncated and approve is not None and needs_approval(toolbox, call.name):
        asked = time.perf_counter()
        approved = bool(await wrap(approve(call)))
        approval_ms = (time.perf_counter() - asked) * 1000
    if call.truncated:
        result = error_result(call, truncated_tool_call_message(call.name))
    elif not approved:
        result = error_result(call, DECLINED)
    else:
        result = await wrap(_dispatch(toolbox, call, timeout_s))
    if len(result.content) > max_chars:
        cut = len(result.content) - max_chars
        result = result.model_copy(
            update={"content": result.content[:max_chars] + f"\n[… {cut} more characters cut]", "truncated": True}
        )
    return ToolRun(result, approved, approval_ms)


async def _dispatch(toolbox: Any, call: ToolCall, timeout_s: float) -> ToolResult:
    work = _in_own_thread(toolbox, call) if call.name in THREADED_TOOLS else toolbox.dispatch(call)
    try:
        return await asyncio.wait_for(work, timeout=timeout_s)
    except TimeoutError:
        content = f"Tool '{call.name}' timed out after {timeout_s:g} s."
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - any tool fault goes back to the model, never up
        name = type(exc).__name__
        if name in ("ToolNotAllowedError", "ToolExecutionError"):
            content = f"Tool '{call.name}' is not available. Available tools: {', '.join(toolbox.names())}."
        else:
            content = f"Tool '{call.name}' failed: {name}: {redact(str(exc))[:500]}"
    return error_result(call, content)


async def _in_own_thread(toolbox: Any, call: ToolCall) -> ToolResult:
    """Run the tool on a fresh daemon thread with its own event loop.

    persona-core's local tools are ``async def`` but do blocking work (``os.open``/``os.read``,
    ``re``, arithmetic) on the caller's loop. A read that blocks (a FIFO, a hung mount) or a
    pathological regex would freeze our loop: no timeout, no Ctrl-C, no redraw. On its own
    thread the wait stays cancellable; a thread that never returns is abandoned (daemon, so it
    cannot hold up exit) rather than taking a slot in the loop's shared executor.
    """
    from persona_runtime.own_thread import on_own_thread

    return await on_own_thread(lambda: asyncio.run(toolbox.dispatch(call)), name=f"tool-{call.name}")


async def inject_skill(skills: dict[str, Any], injector: Any, name: str) -> str:
    """The activated skill's content, budgeted by persona-core's SkillInjector when there is one."""
    spec = skills[name]
    if injector is not None:
        return await injector.inject(spec)
    return getattr(spec, "content", "")
