"""The ``persona`` command: Typer root app. Subcommands keep heavy imports inside their bodies."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Rich-formatted help costs ~0.6 s of imports (markdown-it, rich.markdown); plain help is
# instant. Startup is a feature here: set TYPER_USE_RICH=1 for the boxed help.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer  # noqa: E402

from persona_cli import exit_codes  # noqa: E402
from persona_cli.commands.agent import agent
from persona_cli.commands.chat import EPILOG as CHAT_EPILOG
from persona_cli.commands.chat import chat
from persona_cli.commands.core import register_core_commands
from persona_cli.commands.logs import logs_app
from persona_cli.commands.memory import memory_app
from persona_cli.commands.mcp import mcp_app

__version__ = "0.1.0"

app = typer.Typer(
    name="persona",
    help="Chat with and run agents on persona-core personas. Works offline out of the box.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"persona {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    env_file: Path | None = typer.Option(
        None, "--env-file", help="Load variables from this file instead of ./.env (the real environment wins).",
        exists=False, dir_okay=False,
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show warnings and full tracebacks on errors."),
) -> None:
    """Chat with and run agents on persona-core personas. Works offline out of the box."""
    if verbose:
        os.environ["PERSONA_VERBOSE"] = "1"
    load_env_file(env_file)


def load_env_file(path: Path | None) -> None:
    """Load ``path`` (or ./.env when present) without overriding the real environment."""
    target = path if path is not None else Path(".env")
    if path is not None and not target.is_file():
        raise exit_codes.CliError(f"--env-file: no such file: {target}", exit_codes.USAGE)
    if target.is_file():
        from dotenv import load_dotenv

        load_dotenv(target, override=False)


app.command(
    help="Chat with a persona in a streaming REPL, or one-shot with a MESSAGE. Every conversation is kept: "
    "-c continues the newest, --resume ID another, --list shows them. Piped stdin without MESSAGE: one message per line.",
    epilog=CHAT_EPILOG,
)(chat)
app.command(help="Run a plan-act-reflect agent on a task.")(agent)
app.add_typer(logs_app, name="logs", help="Read the turn log: tail, list, show, stats.")
app.add_typer(memory_app, name="memory", help="See and change what a persona remembers: list, search, show, forget, add, edit, migrate.")
app.add_typer(mcp_app, name="mcp", help="MCP servers whose tools personas can use: persona mcp list.")
register_core_commands(app)


def main() -> None:
    """Console entry point: one-line errors with documented exit codes."""
    try:
        if sys.argv[1:3] == ["logs", "tail"]:
            # Typer converts option values through pydantic (~0.15 s of imports); `logs tail`
            # must stay close to `--help`, so it runs on Typer's own command and click's parser
            # with plain values converted here (persona_cli.commands.fast_invoke). Anything else
            # (--help, a bad value) returns None and goes through Typer as usual.
            from persona_cli.commands.logs import fast_tail

            load_env_file(None)
            fast_rc = fast_tail(sys.argv[1:])
            if fast_rc is not None:
                sys.exit(fast_rc)
        rc = app(standalone_mode=False)
    except exit_codes.CliError as exc:
        _fail(str(exc), exc.code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(exit_codes.INTERRUPTED)
    except KeyboardInterrupt:
        sys.exit(exit_codes.INTERRUPTED)
    except Exception as exc:  # click usage errors and anything unexpected
        from typer._click import exceptions as click_exceptions  # Typer vendors click

        if isinstance(exc, click_exceptions.NoArgsIsHelpError):
            exc.show()  # a bare `persona` (or `persona logs`) shows help: not an error
            sys.exit(exit_codes.OK)
        if isinstance(exc, click_exceptions.UsageError):
            command = exc.ctx.command_path if exc.ctx is not None else "persona"
            _fail(f"{exc.format_message()} (see '{command} --help')", exit_codes.USAGE)
        if isinstance(exc, click_exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        from persona_runtime.secrets import redact
        from persona_runtime.settings import verbose_from_env

        if verbose_from_env():
            import traceback

            sys.stderr.write(redact(traceback.format_exc()))

        _fail(f"internal error: {type(exc).__name__}: {redact(str(exc))} (run with -v for details)", exit_codes.RUNTIME_ERROR)
    else:
        sys.exit(rc if isinstance(rc, int) else exit_codes.OK)


def _fail(message: str, code: int) -> None:
    from persona_runtime.secrets import redact

    sys.stderr.write(f"persona: {redact(message)}\n")
    sys.stderr.flush()
    sys.exit(code)
