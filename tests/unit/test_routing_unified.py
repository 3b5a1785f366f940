"""UnifiedRouter: layer-2 scores (hand-computed), ties, partial metadata and the bounded fallback."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pytest
from persona.schema.persona import Persona

from persona_runtime.routing import HeuristicRouter, RoutingConstraintError, RoutingContext, UnifiedRouter
from persona_runtime.routing.scoring import SweetSpotScorer, quality_proxy
from persona_runtime.tier import ModelSlot, TierConfig, TierMetadata, TierRegistry

FRONTIER = TierMetadata(
    cost_input_per_1k_tokens=1.0, cost_output_per_1k_tokens=4.0, first_token_latency_ms=1500,
    throughput_tokens_per_sec=40, context_window=200_000, tool_strength="strong", reasoning_capable=True,
)
MID = TierMetadata(
    cost_input_per_1k_tokens=0.3, cost_output_per_1k_tokens=1.2, first_token_latency_ms=800,
    throughput_tokens_per_sec=80, context_window=128_000, tool_strength="medium",
)
SMALL = TierMetadata(
    cost_input_per_1k_tokens=0.05, cost_output_per_1k_tokens=0.2, first_token_latency_ms=300,
    throughput_tokens_per_sec=150, context_window=16_000, tool_strength="weak",
)


def registry(**tiers: TierMetadata | None) -> TierRegistry:
    return TierRegistry([
        TierConfig(name, models=(ModelSlot(provider="openai", model=f"m-{name}", api_key="k"),), metadata=metadata)
        for name, metadata in tiers.items()
    ])


def full() -> TierRegistry:
    return registry(frontier=FRONTIER, mid=MID, small=SMALL)


def stepping_clock(step_s: float) -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: next(ticks) * step_s


# -- layer 2 scores -------------------------------------------------------------------------
#
# Hand computation, 2000 input tokens, middle phase, text_default (cost .4, quality .5, latency .1):
#   proxy = .10 * 2000/4000 = .05
#   frontier: fit .05;  cents 1.0*2 + 4.0*.5 = 4.0 -> cost .20; lat 1-1500/5000 = .70 -> .080+.025+.070 = .175
#   mid:      fit .55;  cents  .6 + .6 = 1.2      -> cost .76; lat .84              -> .304+.275+.084 = .663
#   small:    fit .95;  cents  .1 + .1 = .2       -> cost .96; lat .94              -> .384+.475+.094 = .953


def test_easy_turn_goes_to_small_with_exact_scores() -> None:
    reg = full()
    decision = UnifiedRouter(reg).route(RoutingContext(estimated_input_tokens=2000))
    assert decision.tier == "small"
    assert decision.model == "m-small"
    assert decision.scores == pytest.approx({"frontier": 0.175, "mid": 0.663, "small": 0.953})
    assert decision.layer2_score == pytest.approx(0.953)
    assert decision.rationale == "layer2: best=small score=0.953"
    assert decision.candidates_considered == ("frontier", "mid", "small")
    assert decision.layer1_filter_reasons == {}
    assert not decision.fallback_triggered and decision.fallback_reason is None
    assert reg._cache == {}


# First turn + identity-sensitive, opening phase, 2000 tokens: proxy = .30+.30+.05+.05 = .70
#   frontier: fit 1-.3 = .7 + .1 (reasoning, proxy >= .5) = .8;  mid: fit .8;  small: fit .3
#   text_default: frontier .08+.40+.07 = .55;  mid .304+.40+.084 = .788;  small .384+.15+.094 = .628
#   voice (cost .1, quality .3, latency .6):
#                 frontier .02+.24+.42 = .68;  mid .076+.24+.504 = .82;   small .096+.09+.564 = .75
HARD = {"is_first_turn": True, "is_identity_sensitive": True, "conversation_phase": "opening", "estimated_input_tokens": 2000}


def test_demanding_turn_text_default() -> None:
    ctx = RoutingContext(**HARD)  # type: ignore[arg-type]
    assert quality_proxy(ctx) == pytest.approx(0.70)
    decision = UnifiedRouter(full()).route(ctx)
    assert decision.scores == pytest.approx({"frontier": 0.55, "mid": 0.788, "small": 0.628})
    assert (decision.tier, decision.rationale) == ("mid", "layer2: best=mid score=0.788")


def test_demanding_turn_voice_profile() -> None:
    ctx = RoutingContext(**HARD, profile="voice")  # type: ignore[arg-type]
    decision = UnifiedRouter(full()).route(ctx)
    assert decision.scores == pytest.approx({"frontier": 0.68, "mid": 0.82, "small": 0.75})
    assert decision.tier == "mid"


def test_quality_proxy_caps_at_one() -> None:
    ctx = RoutingContext(
        is_first_turn=True, is_identity_sensitive=True, requires_strong_tools=True, requires_vision=True,
        estimated_input_tokens=100_000, conversation_phase="closing",
    )
    assert quality_proxy(ctx) == pytest.approx(1.0)
    assert quality_proxy(RoutingContext()) == 0.0


def test_cheap_fast_frontier_wins_a_demanding_turn() -> None:
    # proxy .70; frontier now costs like small: fit .8, cost .96, lat .94 -> .384+.40+.094 = .878
    cheap_frontier = TierMetadata(
        cost_input_per_1k_tokens=0.05, cost_output_per_1k_tokens=0.2, first_token_latency_ms=300,
        throughput_tokens_per_sec=150, context_window=200_000, reasoning_capable=True,
    )
    decision = UnifiedRouter(registry(frontier=cheap_frontier, mid=MID, small=SMALL)).route(RoutingContext(**HARD))  # type: ignore[arg-type]
    assert decision.scores["frontier"] == pytest.approx(0.878)
    assert (decision.tier, decision.rationale) == ("frontier", "layer2: best=frontier score=0.878")


def test_scores_only_layer1_survivors() -> None:
    decision = UnifiedRouter(full()).route(RoutingContext(estimated_input_tokens=20_000))
    assert set(decision.scores) == {"frontier", "mid"}
    assert decision.candidates_considered == ("frontier", "mid")
    assert decision.layer1_filter_reasons == {"small": "context_window_exceeded (16000 < 20000 tokens)"}


def test_layer1_errors_propagate_and_never_fall_back() -> None:
    router = UnifiedRouter(full())
    with pytest.raises(RoutingConstraintError) as err:
        router.route(RoutingContext(estimated_input_tokens=1_000_000))
    assert err.value.reason == "context_window_exceeded"


def test_ties_go_to_the_earlier_canonical_tier() -> None:
    decision = UnifiedRouter(full(), scorer=lambda tier, metadata, ctx: 0.5).route(RoutingContext())
    assert (decision.tier, decision.layer2_score) == ("frontier", 0.5)
    decision = UnifiedRouter(full(), scorer=lambda tier, metadata, ctx: 0.0 if tier == "frontier" else 0.7).route(
        RoutingContext()
    )
    assert decision.tier == "mid"


def test_float_noise_is_still_a_tie() -> None:
    # first + identity + strong tools: proxy .75, halfway between frontier (1) and mid (.5); same metadata.
    same = TierMetadata(
        cost_input_per_1k_tokens=0.1, cost_output_per_1k_tokens=0.1, first_token_latency_ms=100,
        throughput_tokens_per_sec=100, context_window=8000, tool_strength="strong",
    )
    ctx = RoutingContext(is_first_turn=True, is_identity_sensitive=True, requires_strong_tools=True)
    decision = UnifiedRouter(registry(frontier=same, mid=same, small=same)).route(ctx)
    assert decision.scores["frontier"] == pytest.approx(decision.scores["mid"])
    assert decision.tier == "frontier"


def test_unset_tiers_are_scored_as_the_tier_they_resolve_to() -> None:
    reg = registry(mid=MID)
    decision = UnifiedRouter(reg).route(RoutingContext(estimated_input_tokens=2000))
    assert decision.scores == pytest.approx({"mid": 0.663})
    assert (decision.tier, decision.model) == ("mid", "m-mid")
    assert decision.candidates_considered == ("frontier", "mid", "small")


def test_partial_metadata_scores_the_rest_without_fallback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="persona_runtime.routing")
    reg = registry(frontier=None, mid=MID, small=SMALL)
    decision = UnifiedRouter(reg).route(RoutingContext(estimated_input_tokens=2000))
    assert decision.scores == pytest.approx({"mid": 0.663, "small": 0.953})
    assert decision.rationale == "layer2: best=small score=0.953 missing_metadata=frontier"
    assert not decision.fallback_triggered
    assert any("partial_metadata:frontier" in r.getMessage() for r in caplog.records)
    assert reg._cache == {}


# -- bounded fallback -----------------------------------------------------------------------


def test_empty_metadata_falls_back_to_heuristic() -> None:
    reg = registry(frontier=None, mid=None, small=None)
    decision = UnifiedRouter(reg).route(RoutingContext(is_first_turn=True))
    assert decision.tier == "frontier"
    assert decision.model == "m-frontier"
    assert decision.fallback_triggered
    assert decision.fallback_reason == "empty_metadata"
    assert decision.rationale == "fallback (empty_metadata): first_turn → frontier"
    assert decision.scores == {}
    assert reg._cache == {}


def test_scorer_raising_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    def broken(tier: str, metadata: TierMetadata, ctx: RoutingContext) -> float:
        raise ZeroDivisionError("boom")

    with caplog.at_level(logging.WARNING, logger="persona_runtime.routing"):
        decision = UnifiedRouter(full(), scorer=broken).route(RoutingContext(is_boilerplate=True))
    assert (decision.tier, decision.fallback_reason) == ("small", "scoring_error")
    assert decision.rationale == "fallback (scoring_error): boilerplate → small"
    assert decision.fallback_triggered
    assert [r.getMessage() for r in caplog.records] == [
        "router fell back to heuristic: scoring_error (profile=text_default) ZeroDivisionError: boom"
    ]


def test_non_finite_score_is_a_scoring_error() -> None:
    decision = UnifiedRouter(full(), scorer=lambda tier, metadata, ctx: float("nan")).route(RoutingContext())
    assert decision.fallback_reason == "scoring_error"
    assert decision.rationale == "fallback (scoring_error): default → mid"


def test_slow_scoring_times_out() -> None:
    router = UnifiedRouter(full(), clock=stepping_clock(0.25))  # 250 ms between the two clock reads
    decision = router.route(RoutingContext(estimated_input_tokens=2000))
    assert decision.fallback_triggered
    assert decision.fallback_reason == "timeout"
    assert decision.tier == "mid"
    assert decision.rationale == "fallback (timeout): default → mid [smart_path_ms=250.0; bound_ms=100]"
    assert decision.scores == pytest.approx({"frontier": 0.175, "mid": 0.663, "small": 0.953})  # kept for the log


def test_timeout_bound_depends_on_profile() -> None:
    clock = stepping_clock(0.05)  # 50 ms: fine for text, too slow for voice
    router = UnifiedRouter(full(), clock=clock)
    assert not router.route(RoutingContext()).fallback_triggered
    voice = router.route(RoutingContext(profile="voice"))
    assert voice.fallback_reason == "timeout"
    assert voice.rationale.endswith("[smart_path_ms=50.0; bound_ms=30]")


def test_latency_bounds_can_be_overridden() -> None:
    router = UnifiedRouter(full(), clock=stepping_clock(0.05), latency_bound_ms={"voice": 80})
    assert not router.route(RoutingContext(profile="voice")).fallback_triggered


def test_fallback_warnings_are_rate_limited_per_reason_and_profile(caplog: pytest.LogCaptureFixture) -> None:
    router = UnifiedRouter(registry(mid=None))
    with caplog.at_level(logging.WARNING, logger="persona_runtime.routing"):
        for _ in range(5):
            router.route(RoutingContext())
        router.route(RoutingContext(profile="voice"))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "router fell back to heuristic: empty_metadata (profile=text_default)",
        "router fell back to heuristic: empty_metadata (profile=voice)",
    ]
    # A new router instance has its own memory: no module state to reset between tests.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="persona_runtime.routing"):
        UnifiedRouter(registry(mid=None)).route(RoutingContext())
    assert len(caplog.records) == 1


def test_warning_repeats_after_the_interval(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import persona_runtime.routing.unified as unified

    now = [1000.0]
    monkeypatch.setattr(unified.time, "monotonic", lambda: now[0])
    router = UnifiedRouter(registry(mid=None))
    with caplog.at_level(logging.WARNING, logger="persona_runtime.routing"):
        router.route(RoutingContext())
        now[0] += 59
        router.route(RoutingContext())
        now[0] += 2
        router.route(RoutingContext())
    assert len(caplog.records) == 2


def test_custom_heuristic_is_the_fallback() -> None:
    router = UnifiedRouter(registry(mid=None), heuristic=HeuristicRouter(registry(mid=None), overrides={"default": "small"}))
    assert router.route(RoutingContext()).rationale == "fallback (empty_metadata): default → small"


# -- per persona ----------------------------------------------------------------------------


def _persona(routing: dict[str, object]) -> Persona:
    return Persona.model_validate({
        "persona_id": "kai",
        "identity": {"name": "Kai", "role": "Research assistant", "background": "Reads papers."},
        "routing": routing,
    })


def test_for_persona_fixed_tier_skips_scoring() -> None:
    reg = full()
    router = UnifiedRouter.for_persona(_persona({"tier_for_generation": "frontier"}), reg)
    decision = router.route(RoutingContext(is_boilerplate=True))
    assert (decision.tier, decision.rationale) == ("frontier", "persona_override → frontier")
    assert decision.scores == {} and not decision.fallback_triggered
    assert reg._cache == {}


def test_for_persona_intelligent_weights_replace_text_default() -> None:
    persona = _persona({"intelligent": {"enabled": True, "weights": {"cost": 0.0, "quality": 1.0, "latency": 0.0}}})
    decision = UnifiedRouter.for_persona(persona, full()).route(RoutingContext(**HARD))  # type: ignore[arg-type]
    # Quality only: fits frontier .8, mid .8, small .3 -> a tie, the earlier tier wins.
    assert decision.scores == pytest.approx({"frontier": 0.8, "mid": 0.8, "small": 0.3})
    assert decision.tier == "frontier"
    # Disabled (the default): the standard weights.
    default = UnifiedRouter.for_persona(_persona({}), full()).route(RoutingContext(**HARD))  # type: ignore[arg-type]
    assert default.scores == pytest.approx({"frontier": 0.55, "mid": 0.788, "small": 0.628})


def test_sweet_spot_scorer_is_pure() -> None:
    scorer = SweetSpotScorer()
    ctx = RoutingContext(estimated_input_tokens=2000)
    assert scorer("mid", MID, ctx) == pytest.approx(0.663)
    assert scorer("mid", MID, ctx) == scorer("mid", MID, ctx)
