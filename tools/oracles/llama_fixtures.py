#!/usr/bin/env python3
"""Parity fixtures for @relp/models-llama: random-weight Hugging Face LlamaForCausalLM / Qwen2ForCausalLM models.

For each configuration below this writes fixtures/models/<name>/ with
  config.json, model.safetensors   an HF model folder (as save_pretrained writes it)
  expected.safetensors             tokens (int32), answer/wrong ids, metric, logits, every site activation
                                   (TransformerLens meanings, relp's layouts) and the gradients of a logit
                                   difference w.r.t. resid_pre, attn_out, mlp_out, z and mlp_post
Run from the repository root:  python3 tools/oracles/llama_fixtures.py

`capture` and `init_weights` are shared with tools/oracles/gemma_fixtures.py; the rest with
the other model oracles (model_common.py).
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_common import OUT, Capture, write_fixture, write_versions  # noqa: E402


def rms_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)


def capture(model, modeling, tokens: torch.Tensor, gen: torch.Generator, *, gemma: bool) -> dict[str, torch.Tensor]:
    """Runs the model once with hooks at every relp site and backpropagates a logit difference.

    Returns the tensors for expected.safetensors. `modeling` is the transformers modeling module (its
    apply_rotary_pos_emb is spied on for q and k after rotary).
    """
    config = model.config
    H = config.num_attention_heads
    Hkv = config.num_key_value_heads
    dh = getattr(config, "head_dim", None) or config.hidden_size // H
    eps = config.rms_norm_eps

    cap = Capture(modeling)
    scale = lambda x: rms_scale(x, eps)  # noqa: E731
    base = model.model
    for l, layer in enumerate(base.layers):
        attn = layer.self_attn
        cap.hook_block(
            l, layer, scale=scale, H=H, dh=dh,
            ln1=layer.input_layernorm,
            ln2=layer.pre_feedforward_layernorm if gemma else layer.post_attention_layernorm,
            v=(attn.v_proj, lambda out: out.view(*out.shape[:2], Hkv, dh)),
            attn=attn,
            o_proj=attn.o_proj,
            attn_out=layer.post_attention_layernorm if gemma else attn.o_proj,
            mlp_pre=layer.mlp.gate_proj,
            mlp_down=layer.mlp.down_proj,
            mlp_out=layer.post_feedforward_layernorm if gemma else layer.mlp,
        )
    cap.hook_final_norm(base.norm, scale)

    try:
        out = model(input_ids=tokens, use_cache=False)
    finally:
        cap.close()
    return cap.expected(out.logits, tokens, gen, config.num_hidden_layers, H, dh)


def init_weights(model: torch.nn.Module, gen: torch.Generator, *, norm_offset: float) -> None:
    """Non-trivial random weights: norm weights norm_offset + 0.2·N(0,1) (≠ 1), biases 0.1·N, embeddings 0.5·N,
    linear layers 0.2·N, so every nonlinearity and every norm is exercised."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(norm_offset + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


# name, model class name, config kwargs, batch, seq
CONFIGS = [
    (
        # Grouped-query attention (4 heads, 2 KV heads), untied head, llama3 rope scaling (one medium-frequency
        # band is smoothed, the others divided).
        "llama-gqa",
        "llama",
        dict(vocab_size=67, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
             rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
        2, 11,
    ),
    (
        # Tied embeddings, head_dim ≠ hidden/heads, one KV head (multi-query), attention and MLP biases,
        # linear rope scaling.
        "llama-tied",
        "llama",
        dict(vocab_size=53, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=3,
             num_key_value_heads=1, head_dim=10, max_position_embeddings=32, rms_norm_eps=1e-6,
             tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
             rope_parameters={"rope_type": "linear", "rope_theta": 500.0, "factor": 2.0}),
        3, 7,
    ),
    (
        # Qwen2: q/k/v biases (no o_proj bias), GQA, untied, sliding window 4 on layers ≥ 1 (sequence 10).
        "qwen2-bias",
        "qwen2",
        dict(vocab_size=71, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
             use_sliding_window=True, sliding_window=4, max_window_layers=1,
             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        2, 10,
    ),
]


def main() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    from transformers.models.llama import modeling_llama
    from transformers.models.qwen2 import modeling_qwen2

    classes = {
        "llama": (LlamaConfig, LlamaForCausalLM, modeling_llama),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM, modeling_qwen2),
    }
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for i, (name, kind, cfg, batch, seq) in enumerate(CONFIGS):
        gen = torch.Generator().manual_seed(4321 + i)
        config_cls, model_cls, modeling = classes[kind]
        config = config_cls(**cfg, hidden_act="silu", attn_implementation="eager")
        total += write_fixture(
            name, config, model_cls, batch, seq, gen,
            init=lambda m, g: init_weights(m, g, norm_offset=1.0),
            capture=lambda m, t, g, modeling=modeling: capture(m, modeling, t, g, gemma=False),
        )
    write_versions("llama-versions.json", "tools/oracles/llama_fixtures.py", [c[0] for c in CONFIGS])
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
