"""The ONNX embedding path: agreement with sentence-transformers, reproducible cached export, fallback.

The export itself runs once per checkout (conftest points TUTOR_MODELS next to the venv); one test exports
a second time into a temp dir to prove the build is byte-for-byte reproducible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tutor import embed, embed_onnx
from tutor.embed import SentenceTransformerEmbedder, make_embedder
from tutor.embed_onnx import OnnxEmbedder, OnnxUnavailable, build, build_info_path, onnx_path, open_embedder

SENTENCES = [
    "Chinchilla scales parameters and training tokens equally, about twenty tokens per parameter.",
    "bf16 does not have the same exponent width as fp32.",
    "Gradient checkpointing trades extra compute for memory by recomputing activations in the backward pass.",
    "A reward model trained on human preference pairs scores responses for RLHF.",
    "short",
    "ÜNÍCODE café naïve — “quotes” and emoji 🚀 survive tokenisation",
    "word " * 400,  # longer than max_seq_length: truncated the same way
]


@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    return build(quiet=True)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return SentenceTransformerEmbedder().encode(SENTENCES)


def test_fp32_matches_sentence_transformers(files: dict[str, Path], reference: np.ndarray) -> None:
    vecs = OnnxEmbedder(files["fp32"], precision="fp32").encode(SENTENCES)
    assert vecs.shape == (len(SENTENCES), 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.sum(vecs * reference, axis=1).min() > 0.9999


def test_int8_close_to_sentence_transformers(files: dict[str, Path], reference: np.ndarray) -> None:
    cos = np.sum(OnnxEmbedder(files["int8"], precision="int8").encode(SENTENCES) * reference, axis=1)
    assert cos.min() > 0.98, cos


def test_batching_does_not_change_embeddings(files: dict[str, Path]) -> None:
    emb = OnnxEmbedder(files["fp32"])
    together = emb.encode(SENTENCES)
    alone = np.stack([emb.encode([s])[0] for s in SENTENCES])
    assert np.abs(together - alone).max() < 1e-5  # order kept, padding masked out
    assert emb.encode([]).shape == (0, 384)


def test_batches_cover_every_text_in_order() -> None:
    lengths = sorted([5, 6, 7, 7, 30, 31, 60, 62, 200] * 9)
    spans = embed_onnx._batches(lengths, max_size=16)
    assert spans[0][0] == 0 and spans[-1][1] == len(lengths)
    assert all(a < b and b - a <= 16 for a, b in spans)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    # Short and long texts never share a batch when that would pad the short ones tenfold.
    assert all(lengths[b - 1] < 10 * lengths[a] for a, b in spans)


def test_batches_of_long_texts_bound_the_attention_memory() -> None:
    """Whole answers of 256 tokens in batches of 64 took 600 MB in grade-batch; rows x width^2 is capped."""
    lengths = sorted([12] * 200 + [256] * 100)
    spans = embed_onnx._batches(lengths, max_size=64)
    widths = [(b - a, lengths[b - 1]) for a, b in spans]
    assert all(rows * w * w <= embed_onnx.MAX_ATTENTION_CELLS for rows, w in widths)
    assert max(rows for rows, w in widths if w == 256) == 2
    assert max(rows for rows, w in widths if w == 12) == 64  # short texts batch as before


def test_spread_gives_every_worker_a_batch() -> None:
    lengths = [10, 12, 12, 14, 40]
    spans = embed_onnx._spread([(0, 5)], lengths, workers=2)
    assert len(spans) == 2 and spans[0][0] == 0 and spans[-1][1] == 5 and spans[0][1] == spans[1][0]
    assert embed_onnx._spread([(0, 1)], [7], workers=4) == [(0, 1)]  # one text cannot be split


def test_export_is_reproducible_and_reused(files: dict[str, Path], tmp_path: Path) -> None:
    again = build(out_dir=tmp_path, quiet=True)
    for p in ("fp32", "int8"):
        assert again[p].name == files[p].name  # keyed by the source checksum and recipe
        assert again[p].read_bytes() == files[p].read_bytes()
        data = again[p].with_name(again[p].name + ".data")
        assert embed_onnx._sha256(data) == embed_onnx._sha256(files[p].with_name(files[p].name + ".data"))
    info = json.loads(build_info_path(out_dir=tmp_path).read_text())
    assert info["source_sha256"].startswith("53aa5117")  # the official all-MiniLM-L6-v2 weights
    # A second build finds the files and exports nothing.
    mtime = again["fp32"].stat().st_mtime_ns
    assert build(out_dir=tmp_path, quiet=True) == again
    assert again["fp32"].stat().st_mtime_ns == mtime


def test_checksum_is_remembered(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hashing(path: Path) -> str:
        raise AssertionError("hashed the 90 MB weights again")

    monkeypatch.setattr(embed_onnx, "_sha256", no_hashing)
    assert onnx_path("fp32") == files["fp32"]


def test_unknown_precision_is_an_error() -> None:
    with pytest.raises(ValueError, match="precision"):
        onnx_path("fp16")


# ---------------------------------------------------------------------------------------- fallback


def _copy_build(src: dict[str, Path], dst_dir: Path) -> dict[str, Path]:
    """A models dir of our own holding copies of the shared build, to damage freely."""
    out = {}
    for p, f in src.items():
        for name in (f.name, f.name + ".data"):
            (dst_dir / name).write_bytes((f.parent / name).read_bytes())
        out[p] = dst_dir / f.name
    return out


@pytest.fixture
def own_models(files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("TUTOR_MODELS", str(tmp_path))
    return _copy_build(files, tmp_path)


def _failing_build(**kwargs: object) -> dict[str, Path]:
    raise OnnxUnavailable("exporting all-MiniLM-L6-v2 to ONNX failed: simulated")


def test_corrupt_file_is_rebuilt(own_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    good = own_models["fp32"].read_bytes()
    own_models["fp32"].write_bytes(b"not an onnx model")
    with pytest.raises(OnnxUnavailable, match="cannot load"):
        open_embedder("fp32", build_if_missing=False)
    calls = []

    def rebuild(force: bool = False, quiet: bool = False) -> dict[str, Path]:
        calls.append(force)
        own_models["fp32"].write_bytes(good)
        return own_models

    monkeypatch.setattr(embed_onnx, "build", rebuild)
    emb = open_embedder("fp32", quiet=True)
    assert calls == [True]
    assert emb.encode(["rebuilt"]).shape == (1, 384)


def test_truncated_weights_fall_back_to_sentence_transformers(
    own_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = own_models["fp32"].with_name(own_models["fp32"].name + ".data")
    data.write_bytes(data.read_bytes()[: 1 << 20])
    monkeypatch.setattr(embed_onnx, "build", _failing_build)
    emb = make_embedder("onnx")
    assert isinstance(emb, SentenceTransformerEmbedder)  # not loaded yet: falling back costs nothing up front
    assert "using sentence-transformers instead" in capsys.readouterr().err


def test_missing_file_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUTOR_MODELS", str(tmp_path))
    monkeypatch.setattr(embed_onnx, "build", _failing_build)
    assert isinstance(make_embedder("onnx"), SentenceTransformerEmbedder)
    assert isinstance(make_embedder("onnx-int8"), SentenceTransformerEmbedder)


def test_embedder_choice_from_environment(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TUTOR_EMBEDDER", "st")
    assert isinstance(make_embedder(), SentenceTransformerEmbedder)
    monkeypatch.setenv("TUTOR_EMBEDDER", "onnx-int8")
    assert make_embedder().name.startswith("onnx-int8:")
    monkeypatch.setenv("TUTOR_EMBEDDER", "tpu")
    assert make_embedder().name == f"onnx-fp32:{embed.MINILM}:{embed_onnx.RECIPE}"
    assert "not one of" in capsys.readouterr().err
    monkeypatch.delenv("TUTOR_EMBEDDER")
    assert embed.DEFAULT_EMBEDDER == "onnx"


def test_grading_never_imports_torch(files: dict[str, Path], bank) -> None:
    """The default grading path must start fast: no torch, sentence-transformers, sklearn, scipy, plots."""
    q = bank.questions[0]
    answer = "It uses more data and fewer parameters for the same compute."
    heavy = ("torch", "sentence_transformers", "transformers", "sklearn", "scipy", "matplotlib")
    code = (
        "import sys, json\n"
        "from tutor.cli import app\n"
        "try:\n"
        f"    app(['grade', {q.id!r}, {answer!r}, '--json'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    )
    env = {**os.environ, "TUTOR_EMBEDDER": "onnx"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stdout
    assert '"verdict"' in out.stdout
