"""The chat prompt driven by keystrokes: prompt-toolkit pipe input + dummy output."""

from __future__ import annotations

import asyncio

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from persona_cli.repl import ChatPrompt, ExitGuard, SlashCompleter
from tests.support.prompt_keys import ALT_ENTER, CTRL_C, CTRL_D, CTRL_J, ENTER, PASTE_END, PASTE_START, FakeClock, read_all

def test_enter_sends_and_alt_enter_or_ctrl_j_insert_newlines() -> None:
    keys = ["first line", ALT_ENTER, "second", CTRL_J, "third", ENTER, CTRL_D]
    assert read_all(keys) == ["first line\nsecond\nthird", None]


def test_multiline_mode_swaps_enter_and_alt_enter() -> None:
    keys = ["a", ENTER, "b", ALT_ENTER, CTRL_D]
    assert read_all(keys, multiline=True) == ["a\nb", None]


def test_bracketed_paste_is_never_sent_half_way() -> None:
    keys = [PASTE_START + "line one\rline two\rline three" + PASTE_END, ENTER, CTRL_D]
    assert read_all(keys) == ["line one\nline two\nline three", None]


def test_ctrl_c_clears_a_non_empty_line_without_exiting() -> None:
    keys = ["oops typo", CTRL_C, "real message", ENTER, CTRL_D]
    assert read_all(keys) == ["real message", None]


def test_two_ctrl_c_on_an_empty_line_within_the_window_exit() -> None:
    assert read_all([CTRL_C, CTRL_C]) == [None]


def test_ctrl_c_twice_too_far_apart_does_not_exit() -> None:
    guard = ExitGuard(window=2.0, clock=FakeClock())
    assert guard.press() is False
    guard.clock.now += 2.5
    assert guard.press() is False  # re-armed, not exited
    guard.clock.now += 1.0
    assert guard.press() is True


def test_blank_input_is_not_sent() -> None:
    assert read_all(["   ", ENTER, "hello", ENTER, CTRL_D]) == ["hello", None]


def test_ctrl_d_on_an_empty_line_exits() -> None:
    assert read_all([CTRL_D]) == [None]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("/", None),
        ("/re", {"/reset", "/resume", "/retry", "/recall", "/remember"}),
        ("/mu", {"/multiline"}),
        ("/tier f", {"frontier"}),
        ("hello /re", set()),
    ],
)
def test_slash_completion(typed: str, expected: set[str] | None) -> None:
    completions = list(SlashCompleter().get_completions(Document(typed), None))
    names = {c.text for c in completions}
    if expected is None:
        assert "/help" in names and "/exit" in names and len(names) >= 12
        assert all(c.display_meta_text for c in completions)  # every command has a description
    else:
        assert names == expected


def test_tab_completes_a_slash_command_in_the_prompt() -> None:
    async def main() -> str | None:
        with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
            prompt = ChatPrompt(history_path=None, input=pipe, output=DummyOutput())
            reader = asyncio.ensure_future(prompt.read())
            buffer = prompt.session.default_buffer
            pipe.send_text("/mul")
            while buffer.complete_state is None:  # the menu opens while typing
                await asyncio.sleep(0)
            pipe.send_text("\t")
            # Completion runs as a task on the loop: wait for its result, not for time.
            while buffer.text != "/multiline":
                await asyncio.sleep(0)
            pipe.send_text(ENTER)  # the first Enter accepts the highlighted completion...
            while buffer.complete_state is not None and buffer.complete_state.complete_index is not None:
                await asyncio.sleep(0)
            pipe.send_text(ENTER)  # ...the second sends
            return await reader

    assert asyncio.run(asyncio.wait_for(main(), timeout=20)) == "/multiline"
