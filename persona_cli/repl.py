"""The chat prompt: prompt-toolkit session, key bindings, slash-command completion, toolbar.

Keys: Enter sends; Alt-Enter or Ctrl-J inserts a newline (``--multiline`` swaps
Enter and Alt-Enter). Bracketed paste inserts the whole paste, never sends half.
Ctrl-R searches history; Ctrl-X Ctrl-E opens $EDITOR. Ctrl-C clears the line; on
an empty line a second Ctrl-C within 2 s exits; Ctrl-D on an empty line exits.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings

from persona_runtime.routing.types import TIER_CHOICES

SLASH_COMMANDS: dict[str, str] = {
    "/help": "show commands and keys",
    "/exit": "leave the chat",
    "/new": "start a new conversation (memory is kept; /reset too)",
    "/reset": "start a new conversation (same as /new)",
    "/resume": "list recent conversations, or continue one: /resume ID",
    "/undo": "take back your last exchange and the memory it wrote",
    "/retry": "send your last message again",
    "/tier": f"pick the tier: /tier {'|'.join(TIER_CHOICES)}",
    "/model": "show which model serves each tier",
    "/cost": "tokens and cost of this session",
    "/tools": "list the persona's tools (✎ asks before running)",
    "/history": "show this conversation",
    "/save": "save this conversation as markdown: /save FILE",
    "/log": "where the turn log is, and the last turn's record",
    "/why": "what memory recalled for the last turn",
    "/memory": "the newest episodic memories: /memory [N]",
    "/forget": "forget a memory entry: /forget ID",
    "/remember": "store a note: /remember TEXT, or /remember --fact TEXT",
    "/recall": "recall summary after each turn: /recall on|off",
    "/multiline": "toggle multiline mode (Enter inserts a newline)",
}
EXIT_WINDOW_S = 2.0


class SlashCompleter(Completer):
    """Completes /commands (with descriptions) and /tier arguments."""

    def get_completions(self, document: Any, complete_event: Any) -> Any:
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        if text.startswith("/tier "):
            arg = text[len("/tier ") :]
            for choice in TIER_CHOICES:
                if choice.startswith(arg):
                    yield Completion(choice, start_position=-len(arg))
            return
        if " " in text:
            return
        for name, description in SLASH_COMMANDS.items():
            if name.startswith(text):
                yield Completion(name, start_position=-len(text), display_meta=description)


class ExitGuard:
    """Two Ctrl-C on an empty line within ``window`` seconds exit."""

    def __init__(self, window: float = EXIT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._armed_at: float | None = None

    def press(self) -> bool:
        """Record a Ctrl-C on an empty line; True when it should exit."""
        now = self.clock()
        if self._armed_at is not None and now - self._armed_at <= self.window:
            self._armed_at = None
            return True
        self._armed_at = now
        return False

    def reset(self) -> None:
        self._armed_at = None


class ChatPrompt:
    """Wraps a PromptSession with our bindings. ``read()`` returns the text, or None to exit."""

    def __init__(
        self,
        *,
        history_path: Path | None,
        toolbar: Callable[[], Any] | None = None,
        multiline: bool = False,
        input: Any = None,  # noqa: A002 - prompt-toolkit's name; tests pass a pipe input
        output: Any = None,
        prompt_text: str = "› ",
        clock: Callable[[], float] = time.monotonic,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        """``on_text`` gets the line's text after every change (e.g. :class:`DraftReader`), and ""
        once a line is sent or the prompt ends."""
        self.multiline = multiline
        self.guard = ExitGuard(clock=clock)
        self.prompt_text = prompt_text
        self._notice: str | None = None
        history = FileHistory(str(history_path)) if history_path is not None else InMemoryHistory()
        self.session: PromptSession[str] = PromptSession(
            history=history,
            completer=SlashCompleter(),
            complete_while_typing=True,
            key_bindings=self._bindings(),
            bottom_toolbar=toolbar,
            enable_open_in_editor=True,
            multiline=True,  # Enter is bound below; this keeps newlines legal in the buffer
            input=input,
            output=output,
            prompt_continuation=lambda width, line_number, soft_wrap: "· ".rjust(width),
        )
        self._on_text = on_text
        if on_text is not None:
            self.session.default_buffer.on_text_changed += lambda buffer: on_text(buffer.text)

    def _bindings(self) -> KeyBindings:
        kb = KeyBindings()
        multiline = Condition(lambda: self.multiline)
        completing = Condition(lambda: self.session.default_buffer.complete_state is not None)

        @kb.add("enter", filter=~multiline & ~completing)
        @kb.add("escape", "enter", filter=multiline)
        def _send(event: Any) -> None:
            event.current_buffer.validate_and_handle()

        @kb.add("enter", filter=multiline & ~completing)
        @kb.add("escape", "enter", filter=~multiline)
        @kb.add("c-j")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        @kb.add("enter", filter=completing)
        def _accept_completion(event: Any) -> None:
            buffer = event.current_buffer
            state = buffer.complete_state
            if state is not None and state.current_completion is not None:
                buffer.apply_completion(state.current_completion)
            else:
                buffer.complete_state = None
                buffer.validate_and_handle()

        @kb.add("c-c")
        def _ctrl_c(event: Any) -> None:
            buffer = event.current_buffer
            if buffer.text:
                buffer.reset()
                self.guard.reset()
                return
            if self.guard.press():
                event.app.exit(exception=EOFError())
            else:
                self._notice = "press Ctrl-C again to exit (or Ctrl-D)"
                event.app.invalidate()

        return kb

    def _prompt_message(self) -> FormattedText:
        parts: list[tuple[str, str]] = []
        if self._notice:
            parts.append(("class:bottom-toolbar fg:ansiyellow", f"({self._notice}) "))
        parts.append(("bold", self.prompt_text))
        return FormattedText(parts)

    async def read(self) -> str | None:
        """Read one message; None means the person wants to leave."""
        while True:
            try:
                # handle_sigint=False: Ctrl-C here is a key (raw mode); SIGINT belongs to Foreground.
                text = await self.session.prompt_async(lambda: self._prompt_message(), handle_sigint=False)
            except EOFError:
                return None
            except KeyboardInterrupt:
                continue
            finally:
                self._notice = None
                if self._on_text is not None:
                    self._on_text("")  # the line is empty again (prompt-toolkit does not say so)
            self.guard.reset()
            if text.strip():
                return text


@contextmanager
def typeahead_hidden(fd: int | None = None) -> Iterator[None]:
    """While a reply streams, keys typed ahead are kept for the next prompt (prompt-toolkit reads
    them there) but not echoed into the reply. Only the terminal's ECHO flag changes, without
    flushing its input, and it is put back however the turn ends."""
    try:
        import termios

        fd = sys.stdin.fileno() if fd is None else fd
        saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    except (ImportError, OSError, ValueError):
        saved = None
    if saved is None:
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
