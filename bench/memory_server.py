"""Memory on a Chroma server vs the embedded store: retrieval latency per turn and one write's cost.

Both stores hold the same persona (Astrid) and the same SEED episodic chunks; the server is a
real `chroma run` on 127.0.0.1 (loopback), started and stopped here. Per round, the embedded and
the server memory alternate (order rotating): one ``PersonaMemory.retrieve`` (identity cached,
then three top-3 queries: self facts, worldview, episodic) and one ``PersonaMemory.remember``
(one episodic chunk through persona-core's EpisodicStore, with its version lookup). The hash
embedder is used, so the figures are the store's own cost: a real embedder (MiniLM) adds the
same encode time to both.

    uv run python bench/memory_server.py [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` when run as a script
from bench import REPO, rotations  # noqa: E402

SEED = 200
QUERIES = ("What is the deposit limit?", "Can my landlord raise the rent?", "Tell me about notice periods", "hei")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(runs: int = 200) -> dict[str, Any]:
    from persona.stores import HashEmbedder

    from persona_runtime import _offline
    from persona_runtime.chroma_server import ChromaServer
    from persona_runtime.memory import PersonaMemory
    from persona_runtime.persona_file import load_persona
    from tests.support.chroma_server import ChromaServerProcess

    persona = load_persona(REPO / "personas" / "astrid.yaml")
    with tempfile.TemporaryDirectory(prefix="persona-bench-chroma-") as scratch:
        root = Path(scratch)
        _offline.configure_core_logging(root / "persona-core.log", verbose=False)  # off the terminal
        with ChromaServerProcess(root / "server-data") as chroma:
            server = ChromaServer.parse(chroma.url)
            memories = {
                "embedded": PersonaMemory.open(persona, root=root / "local", embedder=HashEmbedder(), audit_root=root / "a1"),
                "server": PersonaMemory.open(
                    persona, root=root / "marker", embedder=HashEmbedder(), audit_root=root / "a2", server=server,
                    queue_dir=root / "queue",
                ),
            }
            for memory in memories.values():
                memory.load()
                for i in range(SEED):
                    memory.remember(f"USER: note {i} about rent and deposits\nASSISTANT: noted {i}", metadata={}, written_by="bench")
                memory.retrieve("warm up")
            out: dict[str, Any] = {name: {"retrieve_ms": [], "write_ms": []} for name in memories}
            for i, name in enumerate(rotations(list(memories), runs)):
                memory = memories[name]
                started = time.perf_counter()
                memory.retrieve(QUERIES[i % len(QUERIES)])
                out[name]["retrieve_ms"].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                memory.remember(f"USER: bench turn {i}\nASSISTANT: ok", metadata={}, written_by="bench")
                out[name]["write_ms"].append((time.perf_counter() - started) * 1000)
    return {"runs": runs, "seed": SEED, "url": "http://127.0.0.1 (loopback)", **out}


def summarise(r: dict[str, Any], rep: Any) -> None:
    """Lines and a README row (``rep`` is ``bench.__main__.Report``)."""
    stats = {
        name: {k: (statistics.median(r[name][k]), percentile(r[name][k], 0.95)) for k in ("retrieve_ms", "write_ms")}
        for name in ("embedded", "server")
    }
    e, s = stats["embedded"], stats["server"]
    rep.say(f"memory on a Chroma server (loopback) vs embedded, {r['runs']} alternating runs each, {r['seed']} episodic chunks,"
            " hash embedder (store cost only)")
    for name in ("embedded", "server"):
        rr, ww = stats[name]["retrieve_ms"], stats[name]["write_ms"]
        rep.say(f"  {name:9} retrieval per turn p50 {rr[0]:6.1f} ms  p95 {rr[1]:6.1f} ms   one write p50 {ww[0]:6.1f} ms  p95 {ww[1]:6.1f} ms")
    rep.row(
        "memory retrieval per turn, p50 / p95 (3 top-3 queries; hash embedder)",
        f"server on loopback {s['retrieve_ms'][0]:.1f} / {s['retrieve_ms'][1]:.1f} ms",
        f"embedded store {e['retrieve_ms'][0]:.1f} / {e['retrieve_ms'][1]:.1f} ms", "report", None,
    )
    rep.row(
        "one memory write (a turn's episodic chunk), p50 / p95",
        f"server on loopback {s['write_ms'][0]:.1f} / {s['write_ms'][1]:.1f} ms",
        f"embedded store {e['write_ms'][0]:.1f} / {e['write_ms'][1]:.1f} ms", "report", None,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    class Lines:
        def say(self, text: str = "") -> None:
            print(text)

        def row(self, *cells: Any) -> None:
            print("| " + " | ".join("—" if c is None else str(c) for c in cells) + " |")

    summarise(run(args.runs), Lines())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
