"""Distil the static embedding the `difficulty` classifier uses from the shipped MiniLM (model2vec, offline):

    python -m bench.studies.distill_static [--dims 128]

Writes router_core/classifiers/static_minilm/{embeddings.npz, tokenizer.json}: the token table as int8
with one float16 scale per token (about 4 MB), and the distilled tokenizer. Checks that the stored table
embeds texts as model2vec's own model does (cosine > 0.99).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from router_core.embedder import default_model_path
from router_core.static_embed import STATIC_DIR, StaticEmbedder


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = argparse.ArgumentParser()
    p.add_argument("--dims", type=int, default=128)
    args = p.parse_args()
    from model2vec.distill import distill

    model = distill(model_name=str(default_model_path()), pca_dims=args.dims)
    table = np.asarray(model.embedding, dtype=np.float32)
    scale = np.maximum(np.abs(table).max(axis=1), 1e-8) / 127.0
    q = np.round(table / scale[:, None]).astype(np.int8)
    STATIC_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(STATIC_DIR / "embeddings.npz", int8=q, scale=scale.astype(np.float16))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copy(Path(tmp) / "tokenizer.json", STATIC_DIR / "tokenizer.json")
    texts = ["What is the capital of France?", "Design a fault-tolerant distributed queue with exactly-once delivery",
             "def f(x):\n    return x ** 2  # explain this code"]
    ours = StaticEmbedder().embed_batch(texts)
    theirs = model.encode(texts)
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    cos = (ours * theirs).sum(axis=1)
    print(f"wrote {STATIC_DIR}: {q.shape[0]} tokens x {q.shape[1]} dims; cosine to model2vec: {cos.round(4).tolist()}")
    assert (cos > 0.99).all()


if __name__ == "__main__":
    main()
