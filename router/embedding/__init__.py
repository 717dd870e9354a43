"""The static sentence embedding the router ships with (see embedding/minilm-static/README.md)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from router._errors import ArtifactError

DEFAULT_EMBEDDING = "minilm-static"
EMBEDDING_ROOT = Path(__file__).resolve().parent


def embedding_path(name: str) -> Path:
    """Directory of a shipped static embedding, by name."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ArtifactError(f"invalid embedding name {name!r}")
    return EMBEDDING_ROOT / name


class StaticEncoder:
    """Thread-safe wrapper around a model2vec static model (no torch needed)."""

    def __init__(self, path: Path) -> None:
        if not (path / "model.safetensors").is_file():
            raise ArtifactError(f"static embedding not found at {path}")
        from model2vec import StaticModel

        self._model = StaticModel.from_pretrained(str(path))
        self._lock = threading.Lock()
        self.dim = int(self._model.dim)

    def encode(self, questions: list[str]) -> np.ndarray:
        """Unit-norm embeddings, shape (len(questions), dim), float32 (zeros for empty text)."""
        with self._lock:
            vectors = self._model.encode(questions, show_progress_bar=False)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(questions), self.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
