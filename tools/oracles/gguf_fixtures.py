#!/usr/bin/env python3
"""GGUF oracle fixtures for packages/weights (src/gguf).

Writes into fixtures/gguf/:

- quants/<TYPE>.bin and quants/<TYPE>.f32: random blocks of each ggml type (raw bytes) and the float32 values that
  the Python `gguf` package (gguf.quants.dequantize, the reference that transformers uses) gives for them.
  Scale fields are random finite F16 values (including subnormals and signed zeros); the rest is random bits, so
  every bit of every layout is exercised. For the types that gguf can quantise, half the blocks come from
  gguf.quants.quantize of random floats instead.
- quants/manifest.json: per type the number of elements and blocks.
- tiny.gguf (+ tiny.expected.json): a hand-made GGUF (GGUFWriter) with every metadata value type, nested arrays,
  a custom alignment and small tensors of several types; the expected float32 values of every tensor.
- tiny-llama.gguf, tiny-gemma3.gguf (+ .expected.json): tiny random models in llama.cpp's conventions (q/k rows
  permuted for llama, Gemma norms stored as 1 + w), and what transformers' GGUF loader
  (AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)) makes of them: its config and, for every state-dict
  tensor, the shape, sums and a sample of values.

Run: python3 tools/oracles/gguf_fixtures.py  (needs numpy, gguf>=0.17, torch, transformers, accelerate). Deterministic.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "fixtures" / "gguf"

# Byte offsets of the F16 scale fields inside one block, per type (ggml's block_* structs).
SCALE_FIELDS: dict[T, list[int]] = {
    T.F16: [],
    T.BF16: [],
    T.F32: [],
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}
QUANTISABLE = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.BF16, T.F16}


def random_f16(rng: np.random.Generator, n: int) -> np.ndarray:
    """Finite F16 values: mostly moderate scales, some subnormals, zeros and negatives."""
    v = (rng.standard_normal(n) * 0.05).astype(np.float16)
    special = rng.random(n)
    v[special < 0.05] = np.float16(0.0)
    v[(special >= 0.05) & (special < 0.08)] = np.float16(-0.0)
    sub = (special >= 0.08) & (special < 0.12)
    v[sub] = (rng.integers(1, 1024, size=int(sub.sum())).astype(np.uint16)).view(np.float16)
    big = (special >= 0.12) & (special < 0.15)
    v[big] = (rng.standard_normal(int(big.sum())) * 1000).astype(np.float16)
    return v


def random_blocks(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        vals = rng.standard_normal(n_blocks).astype(np.float32)
        vals[::7] = np.float32(-0.0)
        return vals.view(np.uint8).reshape(n_blocks, 4)
    if qtype in (T.F16, T.BF16):
        bits = rng.integers(0, 65536, size=n_blocks, dtype=np.uint32).astype(np.uint16)
        # Keep NaNs out of the oracle comparison (payload handling differs by design): map them to infinities.
        if qtype == T.F16:
            nan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0)
            bits[nan] = bits[nan] & 0xFC00
        else:
            nan = ((bits & 0x7F80) == 0x7F80) & ((bits & 0x007F) != 0)
            bits[nan] = bits[nan] & 0xFF80
        return bits.view(np.uint8).reshape(n_blocks, 2)
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint16).astype(np.uint8)
    for off in SCALE_FIELDS[qtype]:
        raw[:, off : off + 2] = random_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    if qtype in QUANTISABLE and qtype not in (T.F16, T.BF16):
        half = n_blocks // 2
        floats = (rng.standard_normal((half, block_size)) * rng.uniform(0.01, 3, size=(half, 1))).astype(np.float32)
        raw[:half] = quantize(floats, qtype).reshape(half, type_size)
    return raw


def write_quant_fixtures(rng: np.random.Generator) -> None:
    qdir = OUT / "quants"
    qdir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for qtype in SCALE_FIELDS:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        n_elems = 1024
        n_blocks = n_elems // block_size
        raw = random_blocks(rng, qtype, n_blocks)
        expected = dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
        assert expected.size == n_elems, (qtype, expected.size)
        (qdir / f"{qtype.name}.bin").write_bytes(raw.tobytes())
        (qdir / f"{qtype.name}.f32").write_bytes(expected.astype("<f4").tobytes())
        manifest[qtype.name] = {"type": int(qtype), "elements": n_elems, "blocks": n_blocks, "bytes": raw.size}
    (qdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def quantised(data: np.ndarray, qtype: T) -> tuple[np.ndarray, T]:
    if qtype in (T.F32, T.F16):
        return data.astype(np.float32 if qtype == T.F32 else np.float16), qtype
    return quantize(data.astype(np.float32), qtype), qtype


def add(writer: GGUFWriter, name: str, data: np.ndarray, qtype: T) -> np.ndarray:
    """Adds `data` (numpy row-major shape) as a tensor of `qtype`; returns the float32 values a reader must give."""
    q, qt = quantised(data, qtype)
    if qt in (T.F32, T.F16):
        writer.add_tensor(name, q)
    else:
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)  # byte shape: the writer converts it
    return dequantize(q, qt).astype(np.float32).reshape(data.shape)


def raw_tensor(writer: GGUFWriter, name: str, shape: tuple[int, ...], qtype: T, rng: np.random.Generator) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape))
    raw = random_blocks(rng, qtype, n // block_size).reshape(-1)
    byte_shape = (*shape[:-1], shape[-1] // block_size * type_size)
    writer.add_tensor(name, raw.reshape(byte_shape), raw_shape=byte_shape, raw_dtype=qtype)
    return dequantize(raw, qtype).astype(np.float32).reshape(shape)


def short(x: float) -> float:
    """A float32 value in 9 significant digits (round-trips float32, keeps the JSON small)."""
    return float("%.9g" % x)


def summary(arr: np.ndarray, rng: np.random.Generator, n_samples: int = 16) -> dict:
    flat = arr.astype(np.float64).reshape(-1)
    idx = np.unique(np.concatenate([np.arange(min(8, flat.size)), rng.integers(0, flat.size, size=n_samples)]))
    weights = (np.arange(flat.size) % 97).astype(np.float64)
    return {
        "shape": list(arr.shape),
        "sum": float(flat.sum()),
        "weightedSum": float((flat * weights).sum()),
        "absMax": float(np.abs(flat).max()) if flat.size else 0.0,
        "samples": [[int(i), short(flat[i])] for i in idx],
    }


def finish(w: GGUFWriter) -> None:
    """Writes the header, the metadata and the tensors, and closes the file."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tiny(rng: np.random.Generator) -> None:
    path = OUT / "tiny.gguf"
    w = GGUFWriter(str(path), "tinyarch")
    w.add_custom_alignment(64)
    w.add_name("tiny fixture")
    w.add_key_value("t.u8", 200, V.UINT8)
    w.add_key_value("t.i8", -100, V.INT8)
    w.add_key_value("t.u16", 60000, V.UINT16)
    w.add_key_value("t.i16", -30000, V.INT16)
    w.add_key_value("t.u32", 4000000000, V.UINT32)
    w.add_key_value("t.i32", -2000000000, V.INT32)
    w.add_key_value("t.f32", 0.1, V.FLOAT32)
    w.add_key_value("t.bool", True, V.BOOL)
    w.add_key_value("t.string", "héllo ✓ GGUF", V.STRING)
    w.add_key_value("t.u64", 2**63 + 5, V.UINT64)
    w.add_key_value("t.i64", -(2**62), V.INT64)
    w.add_key_value("t.f64", -1.0e300, V.FLOAT64)
    w.add_key_value("t.arr_i32", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("t.arr_f32", [0.5, -1.25], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("t.arr_str", ["a", "", "ü"], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("t.arr_bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("t.arr_nested", [[1, 2], [3]], V.ARRAY)
    expected: dict[str, dict] = {}
    cases = [
        ("f32", (3, 5), T.F32),
        ("f16", (2, 7), T.F16),
        ("q8_0", (2, 64), T.Q8_0),
        ("q4_0", (3, 32), T.Q4_0),
        ("q4_1", (1, 64), T.Q4_1),
        ("q5_0", (2, 32), T.Q5_0),
        ("q5_1", (2, 32), T.Q5_1),
        ("bf16", (4, 8), T.BF16),
    ]
    for name, shape, qt in cases:
        data = rng.standard_normal(shape).astype(np.float32)
        if qt == T.BF16:
            vals = raw_tensor(w, name, shape, qt, rng)
        else:
            vals = add(w, name, data, qt)
        expected[name] = {"type": qt.name, "shape": list(shape), "values": [float(x) for x in vals.reshape(-1)]}
    for name, shape, qt in [("q4_k", (1, 256), T.Q4_K), ("q5_k", (1, 256), T.Q5_K), ("q6_k", (1, 256), T.Q6_K),
                            ("q2_k", (1, 256), T.Q2_K), ("q3_k", (1, 256), T.Q3_K), ("vec3d", (2, 2, 256), T.Q4_K)]:
        vals = raw_tensor(w, name, shape, qt, rng)
        expected[name] = {"type": qt.name, "shape": list(shape), **summary(vals, rng)}
    finish(w)
    (OUT / "tiny.expected.json").write_text(json.dumps(expected) + "\n")


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf LlamaModel.permute (HF rotary halves → interleaved pairs)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_check(path: Path, rng: np.random.Generator) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    cfg = model.config.to_dict()
    keep = [
        "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "intermediate_size", "rms_norm_eps", "vocab_size", "max_position_embeddings", "tie_word_embeddings",
        "head_dim", "sliding_window", "query_pre_attn_scalar", "layer_types", "final_logit_softcapping",
        "attn_logit_softcapping", "rope_parameters", "hidden_act", "hidden_activation", "bos_token_id",
        "eos_token_id", "pad_token_id",
    ]
    tensors = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.get("tie_word_embeddings"):
            continue
        tensors[name] = summary(t.detach().float().numpy(), rng)
    return {"config": {k: cfg[k] for k in keep if k in cfg}, "tensors": tensors}


def model_writer(path: Path, arch: str, name: str, context: int, d: int, layers: int, ff: int, n_head: int,
                 n_kv: int) -> GGUFWriter:
    """A GGUFWriter for a tiny model, with the hyperparameters every architecture has (in llama.cpp's order)."""
    w = GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_context_length(context)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    return w


def write_tiny_llama(rng: np.random.Generator) -> None:
    d, n_head, n_kv, hd, ff, layers, vocab = 32, 4, 2, 8, 256, 2, 40
    path = OUT / "tiny-llama.gguf"
    w = model_writer(path, "llama", "tiny llama", 128, d, layers, ff, n_head, n_kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(vocab)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    add(w, "token_embd.weight", rng.standard_normal((vocab, d)), T.Q8_0)
    for i in range(layers):
        add(w, f"blk.{i}.attn_norm.weight", 1 + 0.1 * rng.standard_normal(d), T.F32)
        add(w, f"blk.{i}.attn_q.weight", permute(rng.standard_normal((n_head * hd, d)), n_head, n_head), T.Q4_1)
        add(w, f"blk.{i}.attn_k.weight", permute(rng.standard_normal((n_kv * hd, d)), n_head, n_kv), T.Q8_0)
        add(w, f"blk.{i}.attn_v.weight", rng.standard_normal((n_kv * hd, d)), T.Q4_0)
        add(w, f"blk.{i}.attn_output.weight", rng.standard_normal((d, n_head * hd)), T.F16)
        add(w, f"blk.{i}.ffn_norm.weight", 1 + 0.1 * rng.standard_normal(d), T.F32)
        add(w, f"blk.{i}.ffn_gate.weight", rng.standard_normal((ff, d)), T.Q5_0)
        add(w, f"blk.{i}.ffn_up.weight", rng.standard_normal((ff, d)), T.Q5_1)
        add(w, f"blk.{i}.ffn_down.weight", rng.standard_normal((d, ff)), T.Q8_0)
    add(w, "output_norm.weight", 1 + 0.1 * rng.standard_normal(d), T.F32)
    add(w, "output.weight", rng.standard_normal((vocab, d)), T.Q8_0)
    finish(w)
    (OUT / "tiny-llama.expected.json").write_text(json.dumps(hf_check(path, rng)) + "\n")


def write_tiny_gemma3(rng: np.random.Generator) -> None:
    d, n_head, n_kv, hd, ff, layers, vocab = 32, 2, 1, 16, 64, 6, 48
    path = OUT / "tiny-gemma3.gguf"
    w = model_writer(path, "gemma3", "tiny gemma3", 256, d, layers, ff, n_head, n_kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(16)
    w.add_vocab_size(vocab)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)

    def norm(name: str, n: int) -> None:
        add(w, name, 1 + 0.3 * rng.standard_normal(n), T.F32)  # llama.cpp stores 1 + w

    add(w, "token_embd.weight", rng.standard_normal((vocab, d)), T.Q8_0)
    for i in range(layers):
        norm(f"blk.{i}.attn_norm.weight", d)
        add(w, f"blk.{i}.attn_q.weight", rng.standard_normal((n_head * hd, d)), T.Q5_0)
        add(w, f"blk.{i}.attn_k.weight", rng.standard_normal((n_kv * hd, d)), T.Q5_0)
        add(w, f"blk.{i}.attn_v.weight", rng.standard_normal((n_kv * hd, d)), T.Q8_0)
        norm(f"blk.{i}.attn_q_norm.weight", hd)
        norm(f"blk.{i}.attn_k_norm.weight", hd)
        add(w, f"blk.{i}.attn_output.weight", rng.standard_normal((d, n_head * hd)), T.F16)
        norm(f"blk.{i}.post_attention_norm.weight", d)
        norm(f"blk.{i}.ffn_norm.weight", d)
        add(w, f"blk.{i}.ffn_gate.weight", rng.standard_normal((ff, d)), T.Q5_0)
        add(w, f"blk.{i}.ffn_up.weight", rng.standard_normal((ff, d)), T.Q8_0)
        add(w, f"blk.{i}.ffn_down.weight", rng.standard_normal((d, ff)), T.Q4_0 if i % 2 == 0 else T.Q4_1)
        norm(f"blk.{i}.post_ffw_norm.weight", d)
    norm("output_norm.weight", d)
    finish(w)
    (OUT / "tiny-gemma3.expected.json").write_text(json.dumps(hf_check(path, rng)) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20250905)
    write_quant_fixtures(rng)
    write_tiny(rng)
    write_tiny_llama(rng)
    write_tiny_gemma3(rng)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)")
    if total > 300_000:
        print("fixtures exceed 300 KB", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
