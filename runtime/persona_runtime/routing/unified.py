"""UnifiedRouter: layer 1 constraints, then layer 2 scoring, with a bounded heuristic fallback."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from persona_runtime.routing.heuristic import HeuristicRouter
from persona_runtime.routing.layer1 import apply_constraint_filter
from persona_runtime.routing.scoring import ProfileWeights, Scorer, SweetSpotScorer
from persona_runtime.routing.types import RoutingContext, RoutingDecision

if TYPE_CHECKING:
    from persona.schema.persona import Persona

    from persona_runtime.tier import TierRegistry

__all__ = ["PROFILE_LATENCY_BOUNDS_MS", "UnifiedRouter"]

logger = logging.getLogger("persona_runtime.routing")

#: The smart path may take this long (ms) before its answer is discarded for the heuristic one.
PROFILE_LATENCY_BOUNDS_MS: Final[Mapping[str, float]] = {"text_default": 100.0, "voice": 30.0}
WARN_INTERVAL_S: Final = 60.0
# Scores closer than this are a tie (float sums like .3+.15+.05 are not exact).
_TIE_EPSILON: Final = 1e-9


class _ScoringError(Exception):
    pass


class UnifiedRouter:
    """Scores every surviving tier that has :class:`TierMetadata` and picks the best.

    Layer-1 errors propagate. Layer 2 falls back to the embedded heuristic router when nothing
    can be scored (``empty_metadata``), the scorer raises (``scoring_error``) or scoring takes
    longer than the profile's bound (``timeout``).
    """

    def __init__(
        self,
        tier_registry: TierRegistry,
        *,
        scorer: Scorer | None = None,
        heuristic: HeuristicRouter | None = None,
        latency_bound_ms: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._registry = tier_registry
        self._scorer: Scorer = scorer or SweetSpotScorer()
        self._heuristic = heuristic or HeuristicRouter(tier_registry)
        self._bounds: dict[str, float] = {**PROFILE_LATENCY_BOUNDS_MS, **(latency_bound_ms or {})}
        self._clock = clock
        # Per instance, so tests need no module state reset.
        self._last_warned: dict[tuple[str, str], float] = {}

    @classmethod
    def for_persona(cls, persona: Persona, tier_registry: TierRegistry, **kwargs: object) -> UnifiedRouter:
        """A persona's pinned tier wins over scoring; ``routing.intelligent.weights`` (when enabled)
        replace the ``text_default`` weights."""
        intelligent = persona.routing.intelligent
        if "scorer" not in kwargs and intelligent.enabled:
            w = intelligent.weights
            kwargs["scorer"] = SweetSpotScorer({"text_default": ProfileWeights(w.cost, w.quality, w.latency)})
        kwargs.setdefault("heuristic", HeuristicRouter.for_persona(persona, tier_registry))
        return cls(tier_registry, **kwargs)  # type: ignore[arg-type]

    @property
    def heuristic(self) -> HeuristicRouter:
        return self._heuristic

    def route(self, context: RoutingContext) -> RoutingDecision:
        survivors, reasons = apply_constraint_filter(context, self._registry)
        if self._heuristic.fixed_tier is not None:
            return self._heuristic.decide(context, survivors, reasons)

        start = self._clock()
        try:
            scores, missing = self._score(context, survivors)
        except _ScoringError:
            return self._fallback(context, survivors, reasons, "scoring_error")
        elapsed_ms = (self._clock() - start) * 1000.0
        if not scores:
            return self._fallback(context, survivors, reasons, "empty_metadata")
        bound_ms = self._bounds.get(context.profile, self._bounds["text_default"])
        if elapsed_ms > bound_ms:
            detail = f" [smart_path_ms={elapsed_ms:.1f}; bound_ms={bound_ms:g}]"
            return self._fallback(context, survivors, reasons, "timeout", detail=detail, scores=scores)

        best, best_score = "", -math.inf
        for tier, score in scores.items():  # canonical order: on a tie the earlier tier stays
            if score > best_score + _TIE_EPSILON:
                best, best_score = tier, score
        rationale = f"layer2: best={best} score={best_score:.3f}"
        if missing:
            rationale += f" missing_metadata={','.join(missing)}"
            self._warn("partial_metadata:" + ",".join(missing), context.profile, level=logging.INFO)
        return RoutingDecision(
            tier=best,
            model=self._registry.model_name_for(best),
            rationale=rationale,
            candidates_considered=survivors,
            layer1_filter_reasons=reasons,
            scores=scores,
            layer2_score=best_score,
        )

    def _score(self, context: RoutingContext, survivors: tuple[str, ...]) -> tuple[dict[str, float], list[str]]:
        """Scores per configured tier; a canonical name that resolves to another tier is that tier."""
        scores: dict[str, float] = {}
        missing: list[str] = []
        try:
            for tier in dict.fromkeys(self._registry.resolve(t) for t in survivors):
                metadata = self._registry.metadata_for(tier)
                if metadata is None:
                    missing.append(tier)
                    continue
                score = float(self._scorer(tier, metadata, context))
                if not math.isfinite(score):
                    raise ValueError(f"non-finite score {score!r} for tier {tier!r}")
                scores[tier] = score
        except Exception as exc:  # noqa: BLE001 - any scoring fault means "use the heuristic"
            self._warn("scoring_error", context.profile, detail=f"{type(exc).__name__}: {exc}")
            raise _ScoringError from exc
        return scores, missing

    def _fallback(
        self,
        context: RoutingContext,
        survivors: tuple[str, ...],
        reasons: dict[str, str],
        reason: str,
        *,
        detail: str = "",
        scores: dict[str, float] | None = None,
    ) -> RoutingDecision:
        if reason != "scoring_error":  # already warned with the exception
            self._warn(reason, context.profile, detail=detail.strip())
        decision = self._heuristic.decide(context, survivors, reasons)
        return replace(
            decision,
            rationale=f"fallback ({reason}): {decision.rationale}{detail}",
            scores=dict(scores or {}),
            fallback_triggered=True,
            fallback_reason=reason,
        )

    def _warn(self, reason: str, profile: str, *, detail: str = "", level: int = logging.WARNING) -> None:
        now = time.monotonic()
        key = (reason, profile)
        last = self._last_warned.get(key)
        if last is not None and now - last < WARN_INTERVAL_S:
            return
        self._last_warned[key] = now
        what = "scored partially" if reason.startswith("partial_metadata") else "fell back to heuristic"
        logger.log(level, "router %s: %s (profile=%s)%s", what, reason, profile, f" {detail}" if detail else "")
