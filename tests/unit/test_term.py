"""persona_cli.term: the one plain-mode rule, the one sanitiser, the one cost and token format."""

from __future__ import annotations

import io
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from persona_cli.console import make_consoles
from persona_cli.term import (
    console_is_plain,
    format_cost,
    format_tokens,
    is_tty,
    no_color_requested,
    one_line,
    plain_output,
    sanitize,
)
from tests.support.paths import REPO

ROOT = REPO


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- plain mode ------------------------------------------------------------------------------

# (environment, plain on a TTY?)
ENVIRONMENTS = [
    ({}, False),
    ({"NO_COLOR": ""}, False),  # no-color.org: present but empty does not turn colour off
    ({"NO_COLOR": "1"}, True),
    ({"NO_COLOR": "0"}, True),  # any non-empty value, even "0"
    ({"TERM": "dumb"}, True),
    ({"TERM": "unknown"}, True),
    ({"TERM": "xterm-256color"}, False),
    ({"TERM": "xterm-256color", "NO_COLOR": ""}, False),
]
IDS = ["nothing", "no-color-empty", "no-color-1", "no-color-0", "dumb", "unknown", "xterm", "xterm-no-color-empty"]


@pytest.mark.parametrize(("environ", "plain"), ENVIRONMENTS, ids=IDS)
def test_plain_output_on_a_tty_follows_term_and_no_color(environ: dict[str, str], plain: bool) -> None:
    assert plain_output(FakeTty(), environ) is plain


@pytest.mark.parametrize(("environ", "_plain"), ENVIRONMENTS, ids=IDS)
def test_not_a_tty_is_always_plain(environ: dict[str, str], _plain: bool) -> None:
    assert plain_output(io.StringIO(), environ)
    closed = io.StringIO()
    closed.close()  # isatty() now raises ValueError
    assert not is_tty(closed) and plain_output(closed, environ)
    assert not is_tty(object())  # type: ignore[arg-type]  # no isatty at all


@pytest.mark.parametrize(("environ", "plain"), ENVIRONMENTS, ids=IDS)
def test_a_rich_console_is_judged_by_the_same_rule(environ: dict[str, str], plain: bool) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, _environ=environ)
    assert console_is_plain(console) is plain
    assert console_is_plain(Console(file=io.StringIO(), force_terminal=False, _environ=environ))


def test_no_color_requested_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert not no_color_requested()
    monkeypatch.setenv("NO_COLOR", "")
    assert not no_color_requested()
    monkeypatch.setenv("NO_COLOR", "yes")
    assert no_color_requested()


@pytest.mark.parametrize(("no_color", "plain"), [("", False), ("1", True)])
def test_make_consoles_on_a_tty_follows_no_color(monkeypatch: pytest.MonkeyPatch, no_color: str, plain: bool) -> None:
    monkeypatch.setattr(sys, "stdout", FakeTty())
    monkeypatch.setattr(sys, "stderr", FakeTty())
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("NO_COLOR", no_color)
    for info_to_stderr in (False, True):
        out, info = make_consoles(info_to_stderr=info_to_stderr)
        assert console_is_plain(out) is plain and console_is_plain(info) is plain


def test_make_consoles_piped_is_plain_with_info_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", FakeTty())
    monkeypatch.delenv("NO_COLOR", raising=False)
    out, info = make_consoles(info_to_stderr=False)
    assert console_is_plain(out) and console_is_plain(info) and info.file is sys.stderr


# -- sanitising ------------------------------------------------------------------------------

C0 = [chr(c) for c in range(0x20) if chr(c) not in "\t\n"]
C1 = [chr(c) for c in range(0x80, 0xA0)]


def is_inert(text: str) -> bool:
    """No character a terminal would act on, other than tab and newline."""
    return all(ch in "\t\n" or unicodedata.category(ch) != "Cc" for ch in text)


@pytest.mark.parametrize("ch", C0, ids=[f"{ord(c):#04x}" for c in C0])
def test_every_c0_control_becomes_its_picture(ch: str) -> None:
    assert sanitize(f"a{ch}b") == f"a{chr(0x2400 + ord(ch))}b"


def test_del_becomes_its_picture() -> None:
    assert sanitize("a\x7fb") == "a␡b"


@pytest.mark.parametrize("ch", C1, ids=[f"{ord(c):#04x}" for c in C1])
def test_every_c1_control_becomes_the_replacement_character(ch: str) -> None:
    assert sanitize(f"a{ch}b") == "a\ufffdb"


def test_tab_and_newline_stay_crlf_is_a_newline_and_a_lone_cr_is_shown() -> None:
    assert sanitize("a\tb\nc") == "a\tb\nc"
    assert sanitize("one\r\ntwo\r\n") == "one\ntwo\n"
    assert sanitize("progress 10%\rprogress 90%") == "progress 10%␍progress 90%"


@pytest.mark.parametrize(
    "attack",
    [
        "\x1b[2J\x1b[H",  # clear the screen, cursor home
        "\x1b[31mred\x1b[0m",  # SGR
        "\x1b]8;;https://evil.example.com\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
        "\x1b]0;new window title\x07",  # OSC set title, BEL-terminated
        "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: write the clipboard
        "\x9b2J",  # 8-bit CSI
        "\x9d0;title\x9c",  # 8-bit OSC ... ST
        "\x1bP+q544e\x1b\\",  # DCS query
        "\x1b[?1049h",  # alternate screen
        "abc\x08\x08\x08xyz",  # backspaces over written text
    ],
)
def test_escape_sequences_are_neutralised(attack: str) -> None:
    cleaned = sanitize(attack)
    assert is_inert(cleaned)
    assert "\x1b" not in cleaned and "\x9b" not in cleaned and "\x07" not in cleaned
    assert is_inert(one_line(attack))


@given(st.text())
def test_sanitised_text_is_always_inert(text: str) -> None:
    assert is_inert(sanitize(text))


def test_printable_text_is_unchanged() -> None:
    text = "Hei, Æsa! «pris» 12 % → ok ✓ 😀 中文\n\tindent"
    assert sanitize(text) == text


def test_one_line_folds_whitespace() -> None:
    assert one_line("  a\n\n b\r\n\tc  ") == "a b c"


# -- cost and tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (None, "unpriced"),
        (0, "$0 (local)"),
        (0.0, "$0 (local)"),
        (0.000002, "<$0.0001"),  # real but tiny: never shown as a bare zero
        (0.004, "<$0.0001"),
        (0.12, "$0.0012"),
        (0.5, "$0.0050"),
        (1, "$0.0100"),
        (99.5, "$0.9950"),
        (99.996, "$1.00"),  # would round to $1.0000: shown in the dollar format
        (150, "$1.50"),
        (123456.789, "$1,234.57"),
    ],
)
def test_format_cost(cents: float | None, text: str) -> None:
    assert format_cost(cents) == text


@given(st.floats(min_value=1e-9, max_value=1e7))
def test_a_known_nonzero_cost_never_reads_as_zero_or_unpriced(cents: float) -> None:
    text = format_cost(cents)
    assert text.startswith(("$", "<$")) and "(local)" not in text
    assert text.strip("$<,.0") != ""


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1.0k"),
        (1234, "1.2k"),
        (12_345, "12.3k"),
        (999_949, "999.9k"),
        (999_950, "1.0M"),  # not "1000.0k"
        (1_234_567, "1.2M"),
    ],
)
def test_format_tokens(n: int, text: str) -> None:
    assert format_tokens(n) == text


# -- import weight ---------------------------------------------------------------------------




def test_counted_says_one_turn_and_two_turns() -> None:
    from persona_cli.term import counted

    assert [counted(n, "turn") for n in (0, 1, 2, 1200)] == ["0 turns", "1 turn", "2 turns", "1,200 turns"]


def test_one_failed_attempt_is_one_attempt() -> None:
    from persona_runtime.fallback import failure_message
    from persona_runtime.turnlog.record import AttemptRecord

    attempt = AttemptRecord(tier="mid", provider="openai", model="m", outcome="error", error="boom")
    assert failure_message([attempt]).startswith("every model failed (1 attempt):")
    assert failure_message([attempt, attempt]).startswith("every model failed (2 attempts):")
