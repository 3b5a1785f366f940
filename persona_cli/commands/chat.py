"""``persona chat PERSONA.yaml [MESSAGE]``: the REPL, one reply per piped line, or one-shot;
``--continue`` / ``--resume ID`` go on with a stored conversation, ``--list`` shows them.

Dispatch only: the REPL is :mod:`chat_repl`, piped lines and one-shot :mod:`chat_piped`, the
turn they share :mod:`chat_turn`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from persona_cli.exit_codes import USAGE, CliError

MCP_CONFIG_HELP = "MCP servers from this mcp.json instead of PERSONA_HOME/mcp.json (e.g. --mcp-config ./mcp.json)."

if TYPE_CHECKING:
    from persona_runtime.session import Session

EPILOG = """Examples:

\b
  persona chat personas/astrid.yaml                      # the REPL
  persona chat personas/astrid.yaml "Hva er depositum?"  # one reply on stdout
  cat essay.md | persona chat personas/maren.yaml "Give feedback on this essay"
  persona chat personas/astrid.yaml -c "And for a student?"  # follow up the last one
  persona chat personas/astrid.yaml --list --json        # stored conversations
  persona chat personas/astrid.yaml --resume 20261130-08 # a unique id prefix
  persona chat personas/astrid.yaml --max-cost 0.50      # never spend more than $0.50
"""


def chat(
    persona_file: Path = typer.Argument(..., help="The persona YAML, e.g. personas/astrid.yaml.", show_default=False, metavar="PERSONA.yaml"),
    message: str | None = typer.Argument(
        None, help='Send this one message, print the reply and exit, e.g. "Hello". Piped stdin is attached as context.',
        show_default=False, metavar="[MESSAGE]",
    ),
    continue_: bool = typer.Option(False, "--continue", "-c", help="Continue the newest conversation with this persona, e.g. -c."),
    resume: str | None = typer.Option(
        None, "--resume", metavar="ID", help="Continue this stored conversation (a unique prefix will do), e.g. --resume 20261130-0820."
    ),
    list_: bool = typer.Option(False, "--list", help="List stored conversations: id, start, turns, last message, e.g. --list."),
    as_json: bool = typer.Option(False, "--json", help="With --list: one JSON object per line, e.g. --list --json | jq .id."),
    tier: str = typer.Option("auto", "--tier", "-t", help="auto (routed per turn), small, mid or frontier."),
    env_file: Path | None = typer.Option(None, "--env-file", help="Load variables from this file (the real environment wins)."),
    multiline: bool = typer.Option(False, "--multiline", help="Enter inserts a newline; Alt-Enter sends."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run tools that write or send without asking."),
    max_cost: float | None = typer.Option(None, "--max-cost", metavar="USD", help="Spend cap for this session in US dollars (wins over PERSONA_MAX_COST_PER_SESSION), e.g. --max-cost 0.50."),
    allow_unpriced: bool = typer.Option(False, "--allow-unpriced", help="Under a spend cap, still use models with no known price."),
    mcp_config: Path | None = typer.Option(None, "--mcp-config", help=MCP_CONFIG_HELP, dir_okay=False),
) -> None:
    """Chat with a persona. Every conversation is kept; -c or --resume goes on with one.

    With MESSAGE: one reply on stdout, then exit (0 ok, 1 failed, 130 interrupted). Piped stdin
    without MESSAGE: each line is a message and stdout carries only the replies."""
    from persona_runtime.routing.types import TIER_CHOICES  # here, not at the top: --help stays fast

    if tier not in TIER_CHOICES:
        raise CliError(f"--tier must be one of {', '.join(TIER_CHOICES)}, not {tier!r}", USAGE)
    if as_json and not list_:
        raise CliError("--json goes with --list", USAGE)
    if continue_ and resume is not None:
        raise CliError("give --continue or --resume ID, not both", USAGE)
    if list_ and (continue_ or resume is not None or message is not None):
        raise CliError("--list takes no MESSAGE, --continue or --resume", USAGE)
    if env_file is not None:
        from persona_cli.app import load_env_file

        load_env_file(env_file)
    from persona_cli.compose import closed_on_error, open_session

    interactive = sys.stdin.isatty() and message is None
    session = open_session(persona_file, start=not interactive and not list_, max_cost=max_cost, allow_unpriced=allow_unpriced, mcp_config=mcp_config)
    if list_:
        from persona_cli.console import make_consoles
        from persona_cli.conversation_view import render_list

        out, _info = make_consoles(info_to_stderr=True)
        render_list(out, session.list_conversations(), as_json=as_json)
        raise typer.Exit(0)
    with closed_on_error(session):
        conversation = _stored_conversation(session, continue_=continue_, resume=resume, interactive=interactive)
    import asyncio

    if message is not None:
        from persona_cli.commands.chat_piped import run_one_shot

        code = run_one_shot(session, message, tier=tier, auto_approve=yes, conversation=conversation)
    elif interactive:
        from persona_cli.commands.chat_repl import run_repl

        code = asyncio.run(run_repl(session, tier=tier, multiline=multiline, auto_approve=yes, conversation=conversation))
    else:
        from persona_cli.commands.chat_piped import run_piped

        code = run_piped(session, tier=tier, auto_approve=yes, conversation=conversation)
    raise typer.Exit(code)


def _stored_conversation(session: Session, *, continue_: bool, resume: str | None, interactive: bool) -> Any:
    """The conversation --continue or --resume names (None: a new one). An unknown or
    ambiguous id is a usage error, one line."""
    from persona_runtime.conversations import ConversationNotFound

    if resume is not None:
        try:
            conversation = session.open_conversation(resume)
        except ConversationNotFound as exc:
            raise CliError(str(exc), USAGE) from None
    elif continue_:
        conversation = session.latest_conversation()
        if conversation is None:
            _notice(f"no earlier conversation with {session.persona_id}; starting a new one")
            return None
    else:
        return None
    if not interactive:  # the REPL shows the last exchange itself; here stdout is the reply's alone
        from persona_cli.conversation_view import short_id

        turns = sum(1 for m in conversation.messages if m.role == "user")
        _notice(f"continuing {short_id(conversation.conversation_id)} ({turns} turn{'s' if turns != 1 else ''})")
    return conversation


def _notice(text: str) -> None:
    from persona_cli.console import make_consoles
    from persona_cli.render import render_notice

    _out, info = make_consoles(info_to_stderr=True)
    render_notice(info, text)
