"""`persona memory`: see and change what a persona remembers (list, search, show, forget, add,
edit, history, rollback, pins, unpin). The work is :mod:`persona_runtime.memory_admin`'s; this
module parses, asks and prints. It opens the same store a chat uses, and no chat model."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from persona_cli import exit_codes
from persona_cli.exit_codes import CliError

if TYPE_CHECKING:
    from persona_runtime.memory_admin import MemoryAdmin, MemoryEntry

memory_app = typer.Typer(
    help="See and change what a persona remembers: list, search, show, forget, add, edit, history, rollback, migrate.",
    no_args_is_help=True,
    epilog='Example: persona memory search personas/astrid.yaml "depositum"',
)

STORE_NAMES = ("identity", "self_facts", "worldview", "episodic")
PersonaArg = Annotated[Path, typer.Argument(help="The persona YAML, e.g. personas/astrid.yaml.", metavar="PERSONA.yaml", show_default=False)]
IdArg = Annotated[str, typer.Argument(help="An entry id, a unique start of it (the persona part may be left out) or a unique part.", metavar="ID", show_default=False)]
StoreOpt = Annotated[str | None, typer.Option("--store", "-s", help="Only this store: identity, self_facts, worldview or episodic.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON lines (for jq).")]


@contextmanager
def _opened(persona_file: Path) -> Iterator[MemoryAdmin]:
    """The persona's memory; every fault one line with its exit code."""
    from persona_cli.compose import setup_errors_exit_2
    from persona_runtime.memory_admin import MemoryAdminError, MemoryStoreError, open_admin

    with setup_errors_exit_2():
        try:
            admin = open_admin(persona_file)
        except MemoryStoreError as exc:
            raise CliError(str(exc), exit_codes.RUNTIME_ERROR) from None
    for notice in admin.notices:
        typer.echo(f"warning: {notice}", err=True)
    try:
        yield admin
    except MemoryAdminError as exc:
        raise CliError(str(exc), exit_codes.USAGE if exc.usage else exit_codes.RUNTIME_ERROR) from None
    except (CliError, typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a store fault mid-command: one line
        from persona_runtime.memory_guard import describe_fault

        raise CliError(describe_fault(exc, admin.memory.root or Path("."))) from None
    finally:
        admin.close()  # in-process callers (tests, a library user) open many in one process


def _stores(store: str | None, default: tuple[str, ...] = STORE_NAMES) -> tuple[str, ...]:
    if store is None:
        return default
    if store not in STORE_NAMES:
        raise CliError(f"--store must be one of {', '.join(STORE_NAMES)}, not {store!r}", exit_codes.USAGE)
    return (store,)


def short_id(entry: MemoryEntry, persona_id: str) -> str:
    """The id without the ``persona::`` part (what ``find`` accepts back)."""
    return entry.id.removeprefix(f"{persona_id}::")


def entry_line(entry: MemoryEntry, persona_id: str, width: int = 90, id_width: int = 28) -> str:
    from persona_cli.term import sanitize

    score = f"{entry.score:5.2f}  " if entry.score is not None else ""
    origin = "yaml" if entry.origin == "yaml" else "    "
    first = sanitize(entry.first_line)
    if len(first) > width:
        first = first[: width - 1] + "…"
    return f"{score}{short_id(entry, persona_id):<{id_width}}  {origin}  {entry.age():>4}  {first}"


def _print_entries(entries: list[MemoryEntry], persona_id: str, as_json: bool) -> None:
    id_width = max((len(short_id(e, persona_id)) for e in entries), default=0)
    for entry in entries:
        typer.echo(json.dumps(entry.to_dict(), ensure_ascii=False) if as_json else entry_line(entry, persona_id, id_width=id_width))


@memory_app.command("list", epilog="Example: persona memory list personas/astrid.yaml --store episodic -n 10")
def list_cmd(
    persona_file: PersonaArg,
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option("-n", "--limit", min=0, help="At most this many entries (0: all).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The entries in the persona's memory, newest first per store; yaml marks what the persona file defines."""
    with _opened(persona_file) as admin:
        entries = admin.list_entries(_stores(store))
        shown = entries if limit == 0 else entries[:limit]
        _print_entries(shown, admin.pid, as_json)
        if not entries:
            typer.echo("no entries", err=True)
        elif len(shown) < len(entries):
            typer.echo(f"{len(entries) - len(shown)} more (-n 0 shows all)", err=True)


@memory_app.command("search", epilog='Example: persona memory search personas/astrid.yaml "depositum" -n 3')
def search_cmd(
    persona_file: PersonaArg,
    query: Annotated[str, typer.Argument(help="What to look for.", show_default=False)],
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many hits.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """The entries most like QUERY, best first, with their similarity (0-1) and age."""
    with _opened(persona_file) as admin:
        hits = admin.search(query, stores=_stores(store, ("self_facts", "worldview", "episodic")), top_k=limit)
        _print_entries(hits, admin.pid, as_json)
        if not hits:
            typer.echo("no entries", err=True)


@memory_app.command("show", epilog="Example: persona memory show personas/astrid.yaml self_facts::0002")
def show_cmd(persona_file: PersonaArg, entry_id: IdArg, as_json: JsonOpt = False) -> None:
    """One entry in full: text, store, origin, version, when and by whom it was written."""
    from persona_cli.term import sanitize

    with _opened(persona_file) as admin:
        entry = admin.find(entry_id)
        if as_json:
            typer.echo(json.dumps(entry.to_dict(), ensure_ascii=False))
            return
        origin = "the persona file (comes back at each load unless pinned out)" if entry.origin == "yaml" else "runtime"
        rows = [
            ("id", entry.id), ("store", entry.store), ("origin", origin), ("version", str(entry.version)),
            ("created", f"{entry.created_at:%Y-%m-%d %H:%M} UTC ({entry.age()} ago)" if entry.created_at else "?"),
            ("written by", entry.written_by or "-"),
        ]
        rows += [(k, v) for k, v in sorted(entry.metadata.items()) if v]
        for key, value in rows:
            typer.echo(f"{key + ':':<12}{sanitize(value)}")
        typer.echo("")
        typer.echo(sanitize(entry.text))


@memory_app.command("forget", epilog="Example: persona memory forget personas/astrid.yaml episodic::019a --yes")
def forget_cmd(
    persona_file: PersonaArg,
    entry_ids: Annotated[list[str], typer.Argument(help="One or more entry ids (or unique parts).", metavar="ID...", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first (needed when stdin is not a terminal).")] = False,
    pin: Annotated[bool, typer.Option("--pin", help="Keep entries from the persona file forgotten at later loads too.")] = False,
) -> None:
    """Delete entries (every version of each). Asks first unless --yes."""
    with _opened(persona_file) as admin:
        entries = [admin.find(ref) for ref in entry_ids]
        yaml = [e for e in entries if e.origin == "yaml"]
        if not yes:
            if not sys.stdin.isatty():
                raise CliError("forget deletes memory and asks first; pass --yes to confirm when stdin is not a terminal", exit_codes.NEEDS_INPUT)
            for entry in entries:
                typer.echo(f"  {entry_line(entry, admin.pid)}", err=True)
            if not _ask(f"Forget {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}?"):
                typer.echo("nothing was forgotten", err=True)
                return
            if yaml and not pin:
                pin = _ask(f"{len(yaml)} of them come{'s' if len(yaml) == 1 else ''} from the persona file and would come back at the next load. Pin out?")
        result = admin.forget([e.id for e in entries], pin=pin)
        for entry in result.forgotten:
            typer.echo(f"forgot {short_id(entry, admin.pid)}")
        if result.returning:
            typer.echo(
                f"warning: {len(result.returning)} forgotten entr{'y comes' if len(result.returning) == 1 else 'ies come'} from the persona file "
                "and come back at the next load; remove it from the YAML, or forget again with --pin", err=True,
            )
        if result.pinned:
            typer.echo(f"pinned out {len(result.pinned)} persona-file entr{'y' if len(result.pinned) == 1 else 'ies'} (persona memory unpin brings them back)", err=True)


def _ask(question: str) -> bool:
    typer.echo(f"{question} [y/N] ", err=True, nl=False)
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}


@memory_app.command("add", epilog='Example: persona memory add personas/astrid.yaml --store self_facts "I answer in English when asked."')
def add_cmd(
    persona_file: PersonaArg,
    text: Annotated[str, typer.Argument(help="What to remember.", show_default=False)],
    store: Annotated[str, typer.Option("--store", "-s", help="self_facts, worldview or episodic (identity is the YAML's).")] = "episodic",
) -> None:
    """Store a new entry (secrets are redacted first); prints its id."""
    with _opened(persona_file) as admin:
        entry = admin.add(store, text)
        typer.echo(f"added {short_id(entry, admin.pid)}")


@memory_app.command("edit", epilog='Example: persona memory edit personas/astrid.yaml self_facts::0003 "I prefer short answers with sources."')
def edit_cmd(persona_file: PersonaArg, entry_id: IdArg, text: Annotated[str, typer.Argument(help="The new text.", show_default=False)]) -> None:
    """Replace an entry's text with a new version (history keeps the old one; rollback restores it)."""
    with _opened(persona_file) as admin:
        entry = admin.edit(entry_id, text)
        typer.echo(f"edited {short_id(entry, admin.pid)} (version {entry.version})")
        if entry.origin == "yaml":
            typer.echo("warning: this entry comes from the persona file; when the persona is indexed again (its YAML or pins change) the YAML's text comes back", err=True)


@memory_app.command("history", epilog="Example: persona memory history personas/astrid.yaml self_facts::0003")
def history_cmd(persona_file: PersonaArg, entry_id: IdArg, as_json: JsonOpt = False) -> None:
    """Every version of an entry, oldest first."""
    from persona_cli.term import sanitize

    with _opened(persona_file) as admin:
        for entry in admin.history(entry_id):
            if as_json:
                typer.echo(json.dumps(entry.to_dict(), ensure_ascii=False))
            else:
                typer.echo(f"v{entry.version:<3} {entry.age():>4}  {entry.written_by or '-':<10} {sanitize(entry.first_line)[:80]}")


@memory_app.command("rollback", epilog="Example: persona memory rollback personas/astrid.yaml self_facts::0003 1")
def rollback_cmd(
    persona_file: PersonaArg, entry_id: IdArg,
    version: Annotated[int, typer.Argument(help="The version to bring back (see history).", min=1, show_default=False)],
) -> None:
    """Make an older version current again (as a new version)."""
    with _opened(persona_file) as admin:
        entry = admin.rollback(entry_id, version)
        typer.echo(f"rolled {short_id(entry, admin.pid)} back to version {version}'s text (now version {entry.version})")


@memory_app.command("pins", epilog="Example: persona memory pins personas/astrid.yaml")
def pins_cmd(persona_file: PersonaArg) -> None:
    """Persona-file entries pinned out (kept forgotten at every load)."""
    from persona_cli.term import sanitize

    with _opened(persona_file) as admin:
        pins = admin.pins()
        for pin in pins:
            typer.echo(f"{pin.hash[:12]}  {pin.store:<10} {sanitize(pin.preview)}")
        if not pins:
            typer.echo("no pins", err=True)


@memory_app.command("unpin", epilog="Example: persona memory unpin personas/astrid.yaml 3fa4c2")
def unpin_cmd(
    persona_file: PersonaArg,
    pins: Annotated[list[str], typer.Argument(help="Pins by the start of their hash (see pins).", metavar="PIN...", show_default=False)],
) -> None:
    """Take pins back: the persona file's entries return at once."""
    with _opened(persona_file) as admin:
        for pin in admin.unpin(pins):
            typer.echo(f"unpinned {pin.hash[:12]} ({pin.preview})")


# `migrate` (to or from a Chroma server) lives in its own module; it belongs to this group.
from persona_cli.commands.memory_migrate import HELP as MIGRATE_HELP, migrate  # noqa: E402

memory_app.command("migrate", help=MIGRATE_HELP)(migrate)
