"""Running one tool call, the same way for chat turns and agent steps.

Every fault is contained and becomes an error result the model (and the person) can
read: a hallucinated or disallowed tool, a tool that raises, a tool that hangs (bounded
by ``timeout_s``), a declined approval, arguments that were not JSON, and a result too
large to send back (cut at ``max_chars``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from persona_runtime.secrets import redact

if TYPE_CHECKING:
    from persona.schema.tools import ToolCall, ToolResult

__all__ = ["DECLINED", "SIDE_EFFECT_TOOLS", "ToolApprover", "error_result", "inject_skill", "run_tool_call"]

#: Tools that write or send something; the CLI asks before running them.
SIDE_EFFECT_TOOLS = frozenset({"file_write", "web_fetch", "web_search", "send_email", "mcp_call"})
DECLINED = "The person declined to run this tool call. Do not retry it; continue without it."
ToolApprover = Callable[["ToolCall"], Awaitable[bool]]


def error_result(call: ToolCall, content: str) -> ToolResult:
    from persona.schema.tools import ToolResult

    return ToolResult(tool_name=call.name, call_id=call.call_id, content=content, is_error=True)


async def run_tool_call(
    toolbox: Any,
    call: ToolCall,
    *,
    approve: ToolApprover | None,
    timeout_s: float,
    max_chars: int,
    guard: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None,
) -> tuple[ToolResult, bool]:
    """Run ``call``; returns (result, approved). ``guard`` wraps awaits (e.g. a cancel token)."""
    from persona.schema.tools import truncated_tool_call_message

    wrap = guard or (lambda awaitable: awaitable)
    approved = True
    if call.truncated:
        result = error_result(call, truncated_tool_call_message(call.name))
    elif approve is not None and call.name in SIDE_EFFECT_TOOLS and call.name in toolbox.names() and not await wrap(approve(call)):
        approved = False
        result = error_result(call, DECLINED)
    else:
        result = await wrap(_dispatch(toolbox, call, timeout_s))
    if len(result.content) > max_chars:
        cut = len(result.content) - max_chars
        result = result.model_copy(
            update={"content": result.content[:max_chars] + f"\n[… {cut} more characters cut]", "truncated": True}
        )
    return result, approved


async def _dispatch(toolbox: Any, call: ToolCall, timeout_s: float) -> ToolResult:
    try:
        return await asyncio.wait_for(toolbox.dispatch(call), timeout=timeout_s)
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


async def inject_skill(skills: dict[str, Any], injector: Any, name: str) -> str:
    """The activated skill's content, budgeted by persona-core's SkillInjector when there is one."""
    spec = skills[name]
    if injector is not None:
        return await injector.inject(spec)
    return getattr(spec, "content", "")
