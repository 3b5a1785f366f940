"""Routing latency: median (and p99) time per UnifiedRouter.route over 10k routes.

    .venv/bin/python bench/routing.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time

from persona_runtime.routing import HeuristicRouter, RoutingContext, UnifiedRouter, classify_message
from persona_runtime.tier import ModelSlot, TierConfig, TierMetadata, TierRegistry


def _registry() -> TierRegistry:
    def tier(name: str, cin: float, cout: float, ftl: float, window: int, tools: str) -> TierConfig:
        meta = TierMetadata(cin, cout, ftl, 80.0, window, tools)  # type: ignore[arg-type]
        return TierConfig(name, models=(ModelSlot(provider="openai", model=f"m-{name}", api_key="k"),), metadata=meta)

    return TierRegistry([
        tier("frontier", 1.0, 4.0, 1500, 200_000, "strong"),
        tier("mid", 0.3, 1.2, 800, 128_000, "medium"),
        tier("small", 0.05, 0.2, 300, 16_000, "weak"),
    ])


def _contexts() -> list[RoutingContext]:
    return [
        RoutingContext(estimated_input_tokens=t, is_first_turn=i % 7 == 0, is_identity_sensitive=i % 5 == 0,
                       is_boilerplate=i % 3 == 0, requires_strong_tools=i % 11 == 0,
                       profile="voice" if i % 4 == 0 else "text_default")
        for i, t in enumerate(range(0, 12_000, 120))
    ]


def _measure(label: str, fn, n: int) -> None:  # type: ignore[no-untyped-def]
    samples: list[float] = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    print(f"{label:<28} median {statistics.median(samples):7.1f} µs   p99 {samples[int(n * 0.99) - 1]:7.1f} µs   (n={n})")


def main(n: int = 10_000) -> None:
    registry = _registry()
    contexts = _contexts()
    unified, heuristic = UnifiedRouter(registry), HeuristicRouter(registry)
    _measure("UnifiedRouter.route", lambda i: unified.route(contexts[i % len(contexts)]), n)
    _measure("HeuristicRouter.route", lambda i: heuristic.route(contexts[i % len(contexts)]), n)
    _measure("classify_message", lambda i: classify_message("thanks, now explain clause 9 of the lease", None), n)
    assert registry._cache == {}, "routing must never build a backend"


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
