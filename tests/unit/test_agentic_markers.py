"""[ASK_USER] / [FINAL] detection: examples plus hypothesis properties over stream splits."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from persona_runtime.agentic.markers import MarkerKind, MarkerScanner, classify

FINAL, ASK, NONE = MarkerKind.FINAL, MarkerKind.ASK_USER, MarkerKind.NONE


@pytest.mark.parametrize(
    ("text", "kind", "thinking", "payload"),
    [
        ("[FINAL] Use DuckDB.", FINAL, "", "Use DuckDB."),
        ("Plan done.\n[FINAL] Use DuckDB.", FINAL, "Plan done.", "Use DuckDB."),
        ("[final]: lower case", FINAL, "", "lower case"),
        ("[ Final ] spaced", FINAL, "", "spaced"),
        ("**[FINAL]** bold marker", FINAL, "", "bold marker"),
        ("**[FINAL]**: bold with colon", FINAL, "", "bold with colon"),
        ("__[FINAL]__ underscores", FINAL, "", "underscores"),
        ("[**FINAL**] inside", FINAL, "", "inside"),
        ("\\[FINAL\\] escaped", FINAL, "", "escaped"),
        ("**[FINAL] whole answer in bold**", FINAL, "", "whole answer in bold"),
        ("[FINAL] **only the answer** is bold", FINAL, "", "**only the answer** is bold"),
        ("[ASK_USER] Which database?", ASK, "", "Which database?"),
        ("[ask user] Which one?", ASK, "", "Which one?"),
        ("[Ask-User]: Which one?", ASK, "", "Which one?"),
        ("*[ASK_USER]* Which one?", ASK, "", "Which one?"),
        ("I need input. [ASK_USER] Which one? [FINAL] x", ASK, "I need input.", "Which one? [FINAL] x"),
        ("Just thinking about [1] and snake_case **bold**.", NONE, "Just thinking about [1] and snake_case **bold**.", ""),
        ("[FINALLY] not a marker", NONE, "[FINALLY] not a marker", ""),
        ("[ASK] not a marker", NONE, "[ASK] not a marker", ""),
        ("", NONE, "", ""),
    ],
)
def test_examples(text: str, kind: MarkerKind, thinking: str, payload: str) -> None:
    result = classify(text)
    assert (result.kind, result.thinking, result.payload) == (kind, thinking, payload)


def test_scanner_holds_back_only_a_possible_marker() -> None:
    scanner = MarkerScanner()
    assert scanner.feed("Plan: read the docs. [FI") == ("Plan: read the docs. ", "")
    assert scanner.kind is NONE
    assert scanner.feed("NAL] Use") == ("", "Use")
    assert scanner.kind is FINAL
    assert scanner.feed(" DuckDB.") == ("", " DuckDB.")
    assert scanner.finish() == ("", "")
    assert scanner.result().payload == "Use DuckDB."


def test_a_false_start_is_released() -> None:
    scanner = MarkerScanner()
    assert scanner.feed("see [fi") == ("see ", "")
    assert scanner.feed("gure 2]") == ("[figure 2]", "")


def test_feed_after_finish_is_an_error() -> None:
    scanner = MarkerScanner()
    scanner.finish()
    with pytest.raises(RuntimeError):
        scanner.feed("x")


# -- properties --------------------------------------------------------------------------------

# Free text: letters, digits, punctuation, markdown emphasis and brackets (but no "[" that could
# start a marker is generated next to a marker name: classify() guards the assumption).
TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ 019.,?!:;-*_()\n\t'\"`#/")), max_size=60)
PAYLOAD = st.text(alphabet=st.sampled_from(list("abcXYZ 019.,?!:;-*_()[]\n'\"`#")), min_size=1, max_size=60)


@st.composite
def marker(draw: st.DrawFn) -> tuple[str, MarkerKind, str]:
    """A marker spelled any tolerated way; returns (text, kind, opening emphasis)."""
    kind = draw(st.sampled_from([FINAL, ASK]))
    words = ["FINAL"] if kind is FINAL else ["ASK", "USER"]
    joiner = draw(st.sampled_from(["_", " ", "-", "", "  "]))
    name = joiner.join(words)
    name = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)
    inner_emph = draw(st.sampled_from(["", "**", "*", "__"]))
    pad_l = draw(st.sampled_from(["", " ", "  "]))
    pad_r = draw(st.sampled_from(["", " "]))
    escape = draw(st.booleans())
    open_b, close_b = ("\\[", "\\]") if escape else ("[", "]")
    core = f"{open_b}{pad_l}{inner_emph}{name}{inner_emph}{pad_r}{close_b}"
    emph = draw(st.sampled_from(["", "*", "**", "***", "_", "__"]))
    colon = draw(st.sampled_from(["", ":", " :"]))
    return f"{emph}{core}{emph}{colon}", kind, emph


@st.composite
def splits(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(text[last:cut])
        last = cut
    pieces.append(text[last:])
    return pieces


def scan(pieces: list[str]) -> tuple[MarkerScanner, str, str]:
    scanner = MarkerScanner()
    thinking, payload = [], []
    for piece in pieces:
        t, p = scanner.feed(piece)
        thinking.append(t)
        payload.append(p)
    t, p = scanner.finish()
    thinking.append(t)
    payload.append(p)
    return scanner, "".join(thinking), "".join(payload)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), before=TEXT, spelled=marker(), after=PAYLOAD, sep=st.sampled_from(["\n", " ", "\n\n"]))
def test_marked_text_classifies_the_same_under_any_split(
    data: st.DataObject, before: str, spelled: tuple[str, MarkerKind, str], after: str, sep: str
) -> None:
    mark, kind, emph = spelled
    assume("[" not in before)  # no earlier (partial) marker in the thinking part
    assume(after.strip() and not after.lstrip().startswith(":"))
    assume(not (emph and (after.strip().startswith(emph[0]) or after.strip().endswith(emph[0]))))
    text = f"{before}{sep if before else ''}{mark} {after}"
    pieces = data.draw(splits(text))
    scanner, thinking, payload = scan(pieces)
    result = scanner.result()
    assert result.kind is kind
    assert result.payload == after.strip()
    assert thinking.strip() == before.strip()
    assert payload.strip() == after.strip()
    # Splitting never changes the outcome.
    assert result == classify(text)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), text=st.text(max_size=80))
def test_unmarked_text_passes_through_whole(data: st.DataObject, text: str) -> None:
    assume(classify(text).kind is NONE)
    scanner, thinking, payload = scan(data.draw(splits(text)))
    assert thinking == text and payload == ""
    assert scanner.kind is NONE


@settings(max_examples=300, deadline=None)
@given(data=st.data(), text=st.text(alphabet=st.sampled_from(list("[]*_\\ :aAfFiInNlLsSkKuUeErR?\n")), max_size=50))
def test_any_text_is_split_invariant(data: st.DataObject, text: str) -> None:
    """Adversarial alphabet (marker characters only): streaming equals the one-shot result."""
    scanner, thinking, payload = scan(data.draw(splits(text)))
    whole = classify(text)
    assert scanner.result() == whole
    assert thinking.strip() == whole.thinking
    assert payload.strip() == whole.payload
