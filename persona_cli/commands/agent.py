"""``persona agent``: run a task step by step; ask, resume, list runs.

Exit codes: 0 completed, 4 step limit reached (a best-effort answer may have been given),
3 the agent asked a question and no answer could be given (the run is saved and can be
resumed), 130 cancelled (Ctrl-C; saved, resumable), 1 the run failed (or no run has that
id), 2 usage error (also: a run that cannot be resumed, e.g. one running in another process).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from persona_cli import exit_codes
from persona_cli.exit_codes import USAGE, CliError

MCP_CONFIG_HELP = "MCP servers from this mcp.json instead of PERSONA_HOME/mcp.json (e.g. --mcp-config ./mcp.json)."

AGENT_BUNDLED_NOTE = (
    "model: bundled SmolLM2-135M (local, offline) on every tier: it cannot plan or call tools; set a provider for real runs"
)

if TYPE_CHECKING:
    from rich.console import Console

    from persona_runtime.session import Session
    from persona_runtime.agentic import CancelToken, Run

ON_ASK = ("ask", "fail", "proceed")
PROCEED_ANSWER = "No answer is available. Proceed with your best judgement and say what you assumed."
STATUS_CODES = {
    "completed": exit_codes.OK,
    "max_steps_reached": exit_codes.MAX_STEPS,
    "spend_cap_reached": exit_codes.MAX_STEPS,
    "needs_input": exit_codes.NEEDS_INPUT,
    "cancelled": exit_codes.INTERRUPTED,
    "error": exit_codes.RUNTIME_ERROR,
}


def agent(
    persona_file: Path | None = typer.Argument(
        None, help="The persona YAML, e.g. personas/kai.yaml (optional with --resume).", show_default=False
    ),
    task: str | None = typer.Argument(None, help="The task; read from piped stdin, or asked for, when omitted."),
    max_steps: int = typer.Option(8, "--max-steps", help="Model steps before a best-effort answer (with --resume: steps to add)."),
    answers: Path | None = typer.Option(
        None, "--answers", help="Answer the agent's questions from this file, in order: one per line, or a YAML list.",
        dir_okay=False,
    ),
    on_ask: str | None = typer.Option(
        None, "--on-ask",
        help="With no answer at hand: ask (a terminal; the default there), fail (exit 3, resumable; the default "
        "otherwise) or proceed (the agent uses its own judgement).",
    ),
    json_out: bool = typer.Option(False, "--json", help="One JSON event per line on stdout; the last has status, usage and cost."),
    resume: str | None = typer.Option(
        None, "--resume", metavar="RUN_ID", help="Continue a run that stopped (question, Ctrl-C, step limit, error) or was killed."
    ),
    list_runs: bool = typer.Option(False, "--list", help="Show recent runs and exit."),
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs --list shows."),
    tier: str = typer.Option("auto", "--tier", "-t", help="auto (frontier to plan, mid to act), small, mid or frontier."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run tools that write or send without asking."),
    max_cost: float | None = typer.Option(
        None, "--max-cost", metavar="USD", help="Spend cap for this run in US dollars (wins over PERSONA_MAX_COST_PER_SESSION); exit 4 at the cap."
    ),
    allow_unpriced: bool = typer.Option(False, "--allow-unpriced", help="Under a spend cap, still use models with no known price."),
    mcp_config: Path | None = typer.Option(None, "--mcp-config", help=MCP_CONFIG_HELP, dir_okay=False),
) -> None:
    """Run an agent on a task: it plans, calls tools, asks you ([ASK_USER]) and answers ([FINAL]).

    Example: persona agent personas/kai.yaml "summarise notes.md" --max-cost 0.25
    """
    if max_steps < 1:
        raise CliError(f"--max-steps must be at least 1, got {max_steps}", USAGE)
    if on_ask is not None and on_ask not in ON_ASK:
        raise CliError(f"--on-ask must be one of {', '.join(ON_ASK)}, not {on_ask!r}", USAGE)
    from persona_runtime.routing.types import TIER_CHOICES  # here, not at the top: --help stays fast

    if tier not in TIER_CHOICES:
        raise CliError(f"--tier must be one of {', '.join(TIER_CHOICES)}, not {tier!r}", USAGE)
    if list_runs:
        if limit < 1:
            raise CliError(f"--limit must be at least 1, got {limit}", USAGE)
        _list(limit, json_out)
        raise typer.Exit(exit_codes.OK)
    answer_list = _read_answers(answers) if answers is not None else []

    stored: Run | None = None
    if resume is not None:
        if task is not None:
            raise CliError("--resume continues the stored task; do not pass a TASK", USAGE)
        stored = _find(resume)
        if persona_file is None:
            if not stored.persona_path:
                raise CliError(f"run {stored.id} does not record its persona file; pass it: persona agent PERSONA.yaml --resume {resume}", USAGE)
            persona_file = Path(stored.persona_path)
    elif persona_file is None:
        raise CliError("missing PERSONA_FILE (e.g. persona agent personas/kai.yaml \"task\"), or use --list / --resume", USAGE)

    stdin_tty = sys.stdin.isatty()
    if stored is None and task is None:
        task = _task_from_stdin_or_prompt(stdin_tty)
    if stored is None and (task is None or not task.strip()):
        raise CliError("the task is empty", USAGE)
    interactive = stdin_tty
    policy = on_ask or ("ask" if interactive else "fail")
    if policy == "ask" and not interactive:
        raise CliError("--on-ask ask needs a terminal on stdin; use --answers FILE or --on-ask fail|proceed", USAGE)

    import asyncio

    from persona_cli.compose import open_session

    session = open_session(persona_file, max_cost=max_cost, allow_unpriced=allow_unpriced, mcp_config=mcp_config)
    if stored is not None and stored.persona_id != session.persona_id:
        asyncio.run(session.aclose())  # it started loading: let go of the memory store it opens
        raise CliError(f"run {stored.id} belongs to persona {stored.persona_id!r}, not {session.persona_id!r}", USAGE)

    code = asyncio.run(
        _run(
            session, task=task, stored=stored, max_steps=max_steps, tier=tier, policy=policy, answers=answer_list,
            json_out=json_out, yes=yes, interactive=interactive,
        )
    )
    raise typer.Exit(code)


# -- inputs --------------------------------------------------------------------------------


def _read_answers(path: Path) -> list[str]:
    """One answer per non-empty line, or a YAML/JSON list of answers."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"--answers: no such file: {path}", USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--answers: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", USAGE) from None
    stripped = text.strip()
    if stripped.startswith(("-", "[")):
        import yaml

        try:
            data = yaml.safe_load(stripped)
        except yaml.YAMLError:
            data = None
        if isinstance(data, list):
            return [str(item) for item in data if item is not None and str(item).strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _task_from_stdin_or_prompt(stdin_tty: bool) -> str | None:
    if not stdin_tty:
        return sys.stdin.read().strip()
    from prompt_toolkit import PromptSession

    try:
        return PromptSession().prompt("task: ").strip()
    except EOFError:
        return None
    except KeyboardInterrupt:
        raise typer.Exit(exit_codes.INTERRUPTED) from None


def _find(run_id: str) -> Run:
    from persona_cli.compose import prepare_data_dir
    from persona_runtime.agentic import RunNotFoundError, RunStatus, find_run

    paths = prepare_data_dir()
    try:
        run = find_run(paths.runs, run_id)
    except RunNotFoundError as exc:
        raise CliError(str(exc), exit_codes.RUNTIME_ERROR) from None
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CliError(f"cannot read run {run_id}: {first}", exit_codes.RUNTIME_ERROR) from None
    if run.status is RunStatus.RUNNING:
        raise CliError(f"run {run.id} is running in another process; it can be resumed once that stops", USAGE)
    if not run.status.resumable:
        raise CliError(
            f"run {run.id} is {run.status}; only a run that stopped (question, Ctrl-C, step limit, error, killed) can be resumed",
            USAGE,
        )
    return run


# -- --list --------------------------------------------------------------------------------


def _list(limit: int, json_out: bool) -> None:
    import json

    from persona_runtime.agentic import list_runs
    from persona_runtime.paths import DataPaths

    runs = list_runs(DataPaths().runs, limit=limit)  # only reads: a read-only home is fine
    if json_out:
        for run in runs:
            row = {
                "id": run.id, "status": str(run.status), "persona_id": run.persona_id, "task": run.task,
                "steps": len(run.steps), "output": run.output, "question": run.pending_question,
                "cost_cents": run.cost_cents, "updated_at": run.updated_at.isoformat(),
            }
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    if not runs:
        typer.echo("no agent runs yet", err=True)
        return
    for run in runs:
        task = " ".join(run.task.split())
        task = task if len(task) <= 60 else task[:59] + "…"
        when = run.updated_at.astimezone().strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{run.id[:12]}  {str(run.status):<17}  {len(run.steps):>2} steps  {when}  {run.persona_id:<10}  {task}")


# -- the run -------------------------------------------------------------------------------


async def _run(
    session: Session, *, task: str | None, stored: Run | None, max_steps: int, tier: str, policy: str,
    answers: list[str], json_out: bool, yes: bool, interactive: bool,
) -> int:
    import asyncio

    from persona_cli.agent_view import AgentView, JsonView
    from persona_cli.interrupts import Foreground, await_loading
    from persona_cli.approval import make_approver
    from persona_cli.console import make_consoles, startup_lines
    from persona_cli.render import render_notice
    from persona_runtime.agentic import CancelToken, RunBusyError
    from persona_runtime.agentic.events import RunFinished

    out, info = make_consoles(info_to_stderr=json_out or not sys.stdin.isatty())
    token = CancelToken()
    view: Any = JsonView() if json_out else AgentView(out=out, info=info)
    if not json_out:
        for line in startup_lines(session, bundled_note=AGENT_BUNDLED_NOTE):
            render_notice(info, line)
    asker = _asker(token, answers, policy, info, json_out)
    approver = make_approver(
        auto_approve=yes, interactive=interactive, info=info,
        prompt_session=lambda: _prompt_session(json_out), on_interrupt=token.cancel,
    )
    status = "error"

    async def consume(loop: Any) -> None:
        nonlocal status
        events = loop.run(
            task, resume=stored, ask=asker, cancel=token, approve=approver,
            tier=None if tier == "auto" else tier, max_steps=max_steps,
        )
        async for event in events:
            view.handle(event)
            if isinstance(event, RunFinished):
                status = str(event.run.status)

    with Foreground() as foreground:
        try:
            loop = await foreground.run(await_loading(session.agentic(), info, "loading memory and models…"))
            for notice in session.take_notices():
                render_notice(info, f"⚠ {notice}")
            # The first Ctrl-C stops the run cleanly (saved as cancelled, and it says so); a second quits.
            await foreground.run(consume(loop), token=token)
            for problem in loop.events.take_failures():
                render_notice(info, f"✗ the turn log could not be written ({problem})")
            if session.spend.active and not json_out:
                render_notice(info, f"$ spend {session.spend.summary()}")
        except asyncio.CancelledError:
            view.interrupted()
            status = "cancelled"
        except RunBusyError as exc:  # another process took the run between --resume's read and now
            raise CliError(str(exc), USAGE) from None
        finally:
            await session.aclose()
    return foreground.exit_code(STATUS_CODES.get(status, exit_codes.RUNTIME_ERROR))


def _asker(token: CancelToken, answers: list[str], policy: str, info: Console, json_out: bool) -> Any:
    from persona_cli.render import render_notice

    queue = list(answers)

    async def ask(question: str) -> str | None:
        if queue:
            answer = queue.pop(0)
            if not json_out:
                render_notice(info, f"↳ answer (from --answers): {answer}")
            return answer
        if policy == "proceed":
            if not json_out:
                render_notice(info, "↳ no answer at hand; the agent proceeds on its own judgement (--on-ask proceed)")
            return PROCEED_ANSWER
        if policy == "fail":
            return None
        session = _prompt_session(json_out)
        while True:
            try:
                text = await session.prompt_async("› ", handle_sigint=False)
            except KeyboardInterrupt:
                token.cancel()
                return None
            except EOFError:
                return None
            if text.strip():
                return text.strip()

    return ask


def _prompt_session(json_out: bool) -> Any:
    from prompt_toolkit import PromptSession

    if json_out or not sys.stdout.isatty():
        from prompt_toolkit.output import create_output

        return PromptSession(output=create_output(stdout=sys.stderr))
    return PromptSession()
