#!/usr/bin/env python3
"""Parity fixtures for @relp/models-gemma: random-weight Hugging Face Gemma3ForCausalLM (text) models.

Writes fixtures/models/<name>/ (config.json, model.safetensors, expected.safetensors) exactly as
tools/oracles/llama_fixtures.py does (same site layouts and metric; `capture` is shared). Sliding windows are
smaller than the sequence so local and global layers differ; norm weights are 0.2·N(0,1) (Gemma multiplies by
1 + w).
Run from the repository root:  python3 tools/oracles/gemma_fixtures.py
"""

from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_fixtures import capture, init_weights  # noqa: E402
from model_common import write_fixture, write_versions  # noqa: E402

# name, config kwargs, legacy (rewrite config.json the way the Hub's Gemma 3 checkpoints spell it), batch, seq
CONFIGS = [
    (
        # layer_types given; GQA; head_dim ≠ hidden/heads; query_pre_attn_scalar ≠ head_dim; final logit
        # soft-capping; attn_logit_softcapping set (transformers' Gemma 3 ignores it, so must relp); linear rope
        # scaling on the global layers; window 3 < sequence 9; untied head.
        "gemma3-a",
        dict(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-6,
             query_pre_attn_scalar=24, sliding_window=3,
             layer_types=["sliding_attention", "full_attention", "sliding_attention"],
             rope_parameters={"full_attention": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
                              "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}},
             final_logit_softcapping=4.0, attn_logit_softcapping=3.0, tie_word_embeddings=False),
        False, 2, 9,
    ),
    (
        # As the Gemma 3 270M config.json spells it: rope_theta / rope_local_base_freq / sliding_window_pattern,
        # no layer_types; one KV head; tied; no soft-capping; window 4 < sequence 10.
        "gemma3-legacy",
        dict(vocab_size=73, hidden_size=24, intermediate_size=40, num_hidden_layers=3, num_attention_heads=2,
             num_key_value_heads=1, head_dim=16, max_position_embeddings=32, rms_norm_eps=1e-6,
             query_pre_attn_scalar=16, sliding_window=4, sliding_window_pattern=3,
             rope_theta=1000000.0, rope_local_base_freq=10000.0,
             final_logit_softcapping=None, attn_logit_softcapping=None, tie_word_embeddings=True),
        True, 2, 10,
    ),
]


def main() -> None:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    from transformers.models.gemma3 import modeling_gemma3

    torch.manual_seed(0)
    total = 0
    for i, (name, cfg, legacy, batch, seq) in enumerate(CONFIGS):
        gen = torch.Generator().manual_seed(8765 + i)
        config = Gemma3TextConfig(**cfg, hidden_activation="gelu_pytorch_tanh", attn_implementation="eager")

        def rewrite(folder: str, cfg=cfg) -> None:
            path = os.path.join(folder, "config.json")
            with open(path) as f:
                cj = json.load(f)
            rp = cj.pop("rope_parameters")
            cj.pop("layer_types")
            cj["rope_theta"] = rp["full_attention"]["rope_theta"]
            cj["rope_local_base_freq"] = rp["sliding_attention"]["rope_theta"]
            cj["rope_scaling"] = None
            cj["sliding_window_pattern"] = cfg["sliding_window_pattern"]
            with open(path, "w") as f:
                json.dump(cj, f, indent=2, sort_keys=True)

        def check(model, name=name, cfg=cfg) -> None:
            assert model.config.layer_types == (cfg.get("layer_types") or model.config.layer_types)
            print(name, model.config.layer_types, model.config.rope_parameters)

        total += write_fixture(
            name, config, Gemma3ForCausalLM, batch, seq, gen,
            init=lambda m, g: init_weights(m, g, norm_offset=0.0),
            capture=lambda m, t, g: capture(m, modeling_gemma3, t, g, gemma=True),
            rewrite=rewrite if legacy else None,
            check=check,
        )
    write_versions("gemma3-versions.json", "tools/oracles/gemma_fixtures.py", [c[0] for c in CONFIGS])
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
