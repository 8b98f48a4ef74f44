#!/usr/bin/env python3
"""Parity fixtures for @relp/models-pythia: random-weight Hugging Face GPTNeoXForCausalLM models.

For each configuration below this writes fixtures/models/<name>/ with
  config.json, model.safetensors      an HF model folder (as save_pretrained writes it, or as real Pythia
                                      checkpoints spell it for the configs marked `legacy`)
  expected.safetensors                tokens (int32), logits, every site activation (TransformerLens meanings)
                                      and gradients of a logit difference w.r.t. some sites
and fixtures/models/pythia-versions.json with the exact library versions.

Run from the repository root:  python3 tools/oracles/pythia_fixtures.py
"""

from __future__ import annotations

import json
import os
import sys

import safetensors.torch
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
from transformers.models.gpt_neox import modeling_gpt_neox as mg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_common import OUT, Capture, write_fixture, write_versions  # noqa: E402

# name, config, batch, seq, legacy (write config/weights the way real Pythia checkpoints spell them)
CONFIGS = [
    (
        "pythia-tiny-par",
        dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
             max_position_embeddings=64, use_parallel_residual=True, layer_norm_eps=1e-5),
        2, 20, False,
    ),
    (
        "pythia-full-rotary",
        dict(vocab_size=211, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
             rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 1.0},
             max_position_embeddings=32, use_parallel_residual=True, layer_norm_eps=1e-6),
        2, 17, False,
    ),
    (
        "pythia-one-token",
        dict(vocab_size=211, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
             max_position_embeddings=16, use_parallel_residual=True, layer_norm_eps=1e-5),
        2, 1, False,
    ),
    (
        # Sequential residual, legacy spelling (rotary_pct / rotary_emb_base, embed_out.weight), as in
        # the Pythia checkpoints on the Hub.
        "pythia-sequential",
        dict(vocab_size=101, hidden_size=40, num_hidden_layers=2, num_attention_heads=5, intermediate_size=64,
             rotary_pct=0.5, rotary_emb_base=1000, max_position_embeddings=40, use_parallel_residual=False,
             layer_norm_eps=1e-5),
        2, 17, True,
    ),
]


def init_weights(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial random weights: large enough that every nonlinearity is exercised."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or "layer_norm" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_in" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.25 * torch.randn(p.shape, generator=gen))


def ln_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    xc = x - x.mean(-1, keepdim=True)
    return torch.sqrt((xc * xc).mean(-1, keepdim=True) + eps)


def capture(model, tokens: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Runs the model once with hooks at every relp site and backpropagates a logit difference."""
    config = model.config
    H = config.num_attention_heads
    dh = config.hidden_size // H
    eps = config.layer_norm_eps
    cap = Capture(mg)
    scale = lambda x: ln_scale(x, eps)  # noqa: E731
    base = model.gpt_neox
    for l, layer in enumerate(base.layers):
        attn = layer.attention
        cap.hook_block(
            l, layer, scale=scale, H=H, dh=dh, resid_mid=not config.use_parallel_residual,
            ln1=layer.input_layernorm,
            ln2=layer.post_attention_layernorm,
            v=(attn.query_key_value, lambda out: out.view(*out.shape[:2], H, 3 * dh)[..., 2 * dh:]),
            attn=attn,
            o_proj=attn.dense,
            attn_out=attn.dense,
            mlp_pre=layer.mlp.dense_h_to_4h,
            mlp_down=layer.mlp.dense_4h_to_h,
            mlp_out=layer.mlp,
        )
    cap.hook_final_norm(base.final_layer_norm, scale)

    try:
        out = model(input_ids=tokens, use_cache=False)
    finally:
        cap.close()
    return cap.expected(out.logits, tokens, gen, config.num_hidden_layers, H, dh)


def legacy_spelling(folder: str) -> None:
    """Rewrites the folder as a Pythia checkpoint spells it: rotary_pct / rotary_emb_base, embed_out.weight."""
    with open(os.path.join(folder, "config.json")) as f:
        cj = json.load(f)
    rp = cj.pop("rope_parameters")
    cj["rotary_pct"] = rp["partial_rotary_factor"]
    cj["rotary_emb_base"] = rp["rope_theta"]
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cj, f, indent=2, sort_keys=True)
    path = os.path.join(folder, "model.safetensors")
    w = safetensors.torch.load_file(path)
    w = {("embed_out.weight" if k == "lm_head.weight" else k): v for k, v in w.items()}
    safetensors.torch.save_file(w, path, metadata={"format": "pt"})


def run_one(name: str, cfg: dict, batch: int, seq: int, legacy: bool, seed: int) -> int:
    gen = torch.Generator().manual_seed(seed)
    config = GPTNeoXConfig(**cfg, hidden_act="gelu", attention_bias=True, tie_word_embeddings=False,
                           attn_implementation="eager")

    def check(model) -> None:
        hp = model.config.rope_parameters
        want = cfg.get("rotary_pct") or cfg["rope_parameters"]["partial_rotary_factor"]
        assert abs(hp["partial_rotary_factor"] - want) < 1e-9, hp

    return write_fixture(name, config, GPTNeoXForCausalLM, batch, seq, gen, init=init_weights, capture=capture,
                         rewrite=legacy_spelling if legacy else None, check=check)


def main() -> None:
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for i, (name, cfg, batch, seq, legacy) in enumerate(CONFIGS):
        total += run_one(name, cfg, batch, seq, legacy, seed=1234 + i)
    write_versions("pythia-versions.json", "tools/oracles/pythia_fixtures.py", [c[0] for c in CONFIGS])
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
