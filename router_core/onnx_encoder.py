"""A sentence-transformers model run by ONNX Runtime on CPU: the same vectors, less overhead.

The transformer of a local sentence-transformers folder is exported to ONNX once (with torch, which
the folder needs anyway) into a cache folder and reused by every later start, which then needs
neither torch nor sentence-transformers: tokenisation is the folder's own `tokenizer.json` through
`tokenizers`, pooling (mean or CLS, from `1_Pooling/config.json`) and normalisation are numpy.

The session runs one pass at a time on the caller's thread (the embedder's own): one intra-op thread,
no inter-op pool, and no spinning. onnxruntime's defaults (a pool of one thread per core that spins
for a while after every pass) made a short prompt cost ~14 ms of CPU for ~6 ms of work, and at one
request at a time a spin follows every pass (issue 27). On this project's 2-core CPU a short prompt
now embeds in ~5-6 ms of CPU; long prompts are bound by the matrix products (see bench/hotpath.py).
Folders this module cannot reproduce exactly (other pooling, extra modules) raise `Unsupported` and
the caller uses torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EXPORT_VERSION = "1"


class Unsupported(Exception):
    """The folder is not a plain Transformer -> Pooling(mean|cls) [-> Normalize] model."""


def _pooling(model_path: Path) -> str:
    modules = json.loads((model_path / "modules.json").read_text()) if (model_path / "modules.json").exists() else []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise Unsupported(f"modules {kinds}")
    cfg = json.loads((model_path / modules[1]["path"] / "config.json").read_text())
    modes = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
    if modes == ["pooling_mode_mean_tokens"]:
        return "mean"
    if modes == ["pooling_mode_cls_token"]:
        return "cls"
    raise Unsupported(f"pooling {modes}")


def _fingerprint(model_path: Path) -> str:
    h = hashlib.sha256(_EXPORT_VERSION.encode())
    for f in sorted(model_path.glob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def export(model_path: Path, out: Path) -> None:
    """Export the folder's transformer (last hidden state, dynamic batch and length) to `out`."""
    from transformers import AutoModel, AutoTokenizer

    # The place to write first: a cache folder that cannot be written fails before seconds of model loading.
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        _export(AutoModel.from_pretrained(str(model_path)).eval(), AutoTokenizer.from_pretrained(str(model_path)),
                tmp)
        os.replace(tmp, out)  # atomic: replicas starting together never read a half-written file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _export(model: Any, tokenizer: Any, tmp: str) -> None:
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    sample = tokenizer(["warm-up text", "a second, longer warm-up text"], padding=True, return_tensors="pt")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes; all axes used are dynamic
        torch.onnx.export(Wrapped(model), tuple(sample[k] for k in INPUTS), tmp, input_names=list(INPUTS),
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={k: {0: "batch", 1: "tokens"} for k in (*INPUTS, "last_hidden_state")})


def export_stem(model_path: Path) -> str:
    """Exports are named <stem>-<hash of the folder's files>.onnx: the stem (folder name and a hash of
    its path) tells apart model folders, the suffix versions of one folder."""
    return f"{model_path.name}-{hashlib.sha256(str(model_path.resolve()).encode()).hexdigest()[:8]}"


def export_path(model_path: Path, cache_dir: Path) -> Path:
    """Where the ONNX export of this model folder is (or will be) kept."""
    return cache_dir / f"{export_stem(model_path)}-{_fingerprint(model_path)}.onnx"


def prune(folder: Path, stem: str, keep: Path) -> None:
    """Remove earlier exports of the same model folder (`stem`; another fingerprint: the package was
    upgraded), ~90 MB each. A process still running one keeps it open; Linux frees it when it ends."""
    for old in folder.glob(f"{stem}-*.onnx"):
        if old != keep:
            with contextlib.suppress(OSError):
                old.unlink()


def gather(passes: Iterable[tuple[Sequence[int] | np.ndarray, np.ndarray]], n: int, dim: int) -> np.ndarray:
    """The rows of (row indices, embeddings) passes put back in input order, as one array."""
    out = np.zeros((n, dim), dtype=np.float32)
    for rows, vectors in passes:
        out[rows] = vectors
    return out


class OnnxEncoder:
    def __init__(self, model_path: Path, cache_dir: Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.pooling = _pooling(model_path)
        stem = export_stem(model_path)
        self.onnx_path = export_path(model_path, cache_dir)
        if not self.onnx_path.exists():
            export(model_path, self.onnx_path)
            prune(cache_dir, stem, keep=self.onnx_path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads   # 0: one per core (onnxruntime's default)
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        cfg_path = model_path / "sentence_bert_config.json"
        max_len = json.loads(cfg_path.read_text()).get("max_seq_length", 256) if cfg_path.exists() else 256
        self.tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.max_len = int(max_len)
        self.tokenizer.enable_truncation(max_length=self.max_len)
        pad = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=pad if pad is not None else 0, pad_token="[PAD]")
        out = self.session.get_outputs()[0].shape
        if isinstance(out[-1], int):
            self.dim = int(out[-1])
        else:
            enc = self.tokenizer.encode("dim")
            self.dim = self._run(np.array([enc.ids]), np.array([enc.attention_mask])).shape[1]

    def encode(self, texts: Sequence[str], max_batch: int = 64, max_tokens: int = 1024) -> np.ndarray:
        """Normalised embeddings, one row per text (all the passes of `passes`)."""
        return gather(self.passes(texts, max_batch, max_tokens), len(texts), self.dim)

    def passes(self, texts: Sequence[str], max_batch: int = 64,
               max_tokens: int = 1024) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row indices, their normalised embeddings), one forward pass at a time. Texts are tokenised
        together, then run longest first in passes of at most `max_batch` texts and `max_tokens`
        padded tokens: on a CPU a larger pass is slower per text, not faster, once its activations
        outgrow the caches (bench/)."""
        if not texts:
            return
        encs = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        lengths = mask.sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < len(order):
            longest = int(lengths[order[start]])  # the pass pads to its first (longest) text
            size = max(1, min(max_batch, max_tokens // max(longest, 1)))
            rows = order[start:start + size]
            yield rows, self._run(ids[rows, :longest], mask[rows, :longest])
            start += size

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.input_names})[0]
        if self.pooling == "cls":
            vectors = hidden[:, 0, :]
        else:
            m = mask[..., None].astype(np.float32)
            vectors = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
