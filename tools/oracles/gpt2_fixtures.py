#!/usr/bin/env python3
"""Parity fixtures for @relp/models-gpt2: random-weight Hugging Face GPT2LMHeadModel checkpoints and their
activations at every relp site (TransformerLens meanings), plus gradients of a logit-difference metric.

Writes, for each shape below, fixtures/models/<name>/{config.json, model.safetensors, expected.safetensors,
oracle.json}. Run from the repository root:  python3 tools/oracles/gpt2_fixtures.py

expected.safetensors holds `tokens` (int32 [B,T]), `logits` [B,T,V], `<site>.<layer>` for every site
(resid_pre, resid_mid, resid_post, attn_out, mlp_out, q, k, v [B,T,H,dh], pattern [B,H,T,T], z [B,T,H,dh],
result [B,T,H,d], mlp_pre, mlp_post, ln1_scale, ln2_scale [B,T,1], ln_final_scale.0) and `grad.<site>.<layer>`
for resid_pre, attn_out, mlp_out, q, k, v, z, mlp_pre, mlp_post: d m / d site, where
m = mean_b(logits[b, T-1, answer_b] - logits[b, T-1, wrong_b]) (`metric_answer`, `metric_wrong`: int32 [B]).
"""

import json
import os
import shutil
import sys

import safetensors.torch
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_common import OUT, answer_and_wrong  # noqa: E402

FIXTURES = [
    # name, config overrides, batch, seq, init scale, strip the `transformer.` prefix from weight names
    dict(
        name="gpt2-a",
        config=dict(vocab_size=97, n_positions=24, n_embd=32, n_layer=2, n_head=4),
        batch=2, seq=17, std=0.25, strip_prefix=False,
    ),
    dict(
        name="gpt2-b",
        config=dict(
            vocab_size=211, n_positions=16, n_embd=48, n_layer=3, n_head=6, n_inner=80,
            activation_function="gelu", layer_norm_epsilon=1e-4, scale_attn_by_inverse_layer_idx=True,
            reorder_and_upcast_attn=True, tie_word_embeddings=False,
        ),
        batch=3, seq=5, std=0.2, strip_prefix=True,
    ),
    dict(
        name="gpt2-c",
        config=dict(vocab_size=64, n_positions=8, n_embd=32, n_layer=2, n_head=2, activation_function="silu"),
        batch=2, seq=1, std=0.3, strip_prefix=False,
    ),
    dict(
        name="gpt2-d",
        config=dict(
            vocab_size=50, n_positions=8, n_embd=16, n_layer=2, n_head=2, activation_function="relu",
            scale_attn_weights=False,
        ),
        batch=2, seq=8, std=0.2, strip_prefix=True,
    ),
]


def init_weights(model, std, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "wte" in name or "wpe" in name or "lm_head" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(std * torch.randn(p.shape, generator=gen))


def run(model, cfg, tokens, answer, wrong):
    """One forward pass with zero deltas added at the gradient sites; returns activations and gradients."""
    H, d, L = cfg.n_head, cfg.n_embd, cfg.n_layer
    dh = d // H
    B, T = tokens.shape
    acts, deltas, handles = {}, {}, []

    def delta_for(key, like):
        t = torch.zeros_like(like, requires_grad=True)
        deltas[key] = t
        return t

    def scale_of(x, eps):
        x64 = x.double()
        xc = x64 - x64.mean(-1, keepdim=True)
        return torch.sqrt((xc * xc).mean(-1, keepdim=True) + eps).float()

    for l, block in enumerate(model.transformer.h):
        def block_pre(mod, args, l=l):
            x = args[0]
            acts[f"resid_pre.{l}"] = x.detach().clone()
            return (x + delta_for(f"resid_pre.{l}", x),) + tuple(args[1:])

        def block_post(mod, args, out, l=l):
            acts[f"resid_post.{l}"] = out.detach().clone()

        def ln1_pre(mod, args, l=l):
            acts[f"ln1_scale.{l}"] = scale_of(args[0], cfg.layer_norm_epsilon)

        def ln2_pre(mod, args, l=l):
            acts[f"resid_mid.{l}"] = args[0].detach().clone()
            acts[f"ln2_scale.{l}"] = scale_of(args[0], cfg.layer_norm_epsilon)

        def c_attn_post(mod, args, out, l=l):
            q, k, v = out.split(d, dim=2)
            for n, t in (("q", q), ("k", k), ("v", v)):
                acts[f"{n}.{l}"] = t.detach().reshape(B, T, H, dh).clone()
            dq = delta_for(f"q.{l}", q)
            dk = delta_for(f"k.{l}", k)
            dv = delta_for(f"v.{l}", v)
            return out + torch.cat([dq, dk, dv], dim=2)

        def attn_post(mod, args, out, l=l):
            acts[f"pattern.{l}"] = out[1].detach().clone()

        def attn_proj_pre(mod, args, l=l):
            z = args[0]
            zh = z.detach().reshape(B, T, H, dh)
            acts[f"z.{l}"] = zh.clone()
            w = mod.weight.detach().reshape(H, dh, d)
            acts[f"result.{l}"] = torch.einsum("bthe,hed->bthd", zh, w).contiguous()
            return (z + delta_for(f"z.{l}", z),)

        def attn_proj_post(mod, args, out, l=l):
            acts[f"attn_out.{l}"] = out.detach().clone()
            return out + delta_for(f"attn_out.{l}", out)

        def fc_post(mod, args, out, l=l):
            acts[f"mlp_pre.{l}"] = out.detach().clone()
            return out + delta_for(f"mlp_pre.{l}", out)

        def mlp_proj_pre(mod, args, l=l):
            x = args[0]
            acts[f"mlp_post.{l}"] = x.detach().clone()
            return (x + delta_for(f"mlp_post.{l}", x),)

        def mlp_proj_post(mod, args, out, l=l):
            acts[f"mlp_out.{l}"] = out.detach().clone()
            return out + delta_for(f"mlp_out.{l}", out)

        handles += [
            block.register_forward_pre_hook(block_pre),
            block.register_forward_hook(block_post),
            block.ln_1.register_forward_pre_hook(ln1_pre),
            block.ln_2.register_forward_pre_hook(ln2_pre),
            block.attn.c_attn.register_forward_hook(c_attn_post),
            block.attn.register_forward_hook(attn_post),
            block.attn.c_proj.register_forward_pre_hook(attn_proj_pre),
            block.attn.c_proj.register_forward_hook(attn_proj_post),
            block.mlp.c_fc.register_forward_hook(fc_post),
            block.mlp.c_proj.register_forward_pre_hook(mlp_proj_pre),
            block.mlp.c_proj.register_forward_hook(mlp_proj_post),
        ]

    def lnf_pre(mod, args):
        acts["ln_final_scale.0"] = scale_of(args[0], cfg.layer_norm_epsilon)

    handles.append(model.transformer.ln_f.register_forward_pre_hook(lnf_pre))

    out = model(input_ids=tokens, output_attentions=True, use_cache=False)
    logits = out.logits
    rows = torch.arange(B)
    metric = (logits[rows, T - 1, answer] - logits[rows, T - 1, wrong]).mean()
    keys = sorted(deltas)
    grads = torch.autograd.grad(metric, [deltas[k] for k in keys])
    for h in handles:
        h.remove()
    for key, g in zip(keys, grads):
        site, layer = key.split(".")
        if site in ("q", "k", "v", "z"):
            g = g.reshape(B, T, H, dh)
        acts[f"grad.{key}"] = g.detach().clone()
    acts["logits"] = logits.detach().clone()
    acts["metric"] = metric.detach().reshape(1).clone()
    return acts


def main():
    torch.manual_seed(0)
    for i, fx in enumerate(FIXTURES):
        folder = os.path.join(OUT, fx["name"])
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        cfg = GPT2Config(**fx["config"], bos_token_id=None, eos_token_id=None, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        cfg._attn_implementation = "eager"
        gen = torch.Generator().manual_seed(1000 + i)
        model = GPT2LMHeadModel(cfg)
        init_weights(model, fx["std"], gen)
        model.save_pretrained(folder, safe_serialization=True)
        if fx["strip_prefix"]:
            path = os.path.join(folder, "model.safetensors")
            sd = safetensors.torch.load_file(path)
            sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
            safetensors.torch.save_file(sd, path, metadata={"format": "pt"})
        # Reload what was written, so the oracle is the checkpoint the TypeScript side reads.
        model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
        for n, p in model.named_parameters():
            p.requires_grad_(False)
        cfg = model.config
        B, T = fx["batch"], fx["seq"]
        tokens = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)
        answer, wrong = answer_and_wrong(cfg.vocab_size, B, gen)
        acts = run(model, cfg, tokens, answer, wrong)
        acts["tokens"] = tokens.to(torch.int32)
        acts["metric_answer"] = answer.to(torch.int32)
        acts["metric_wrong"] = wrong.to(torch.int32)
        acts = {k: v.contiguous() for k, v in acts.items()}
        safetensors.torch.save_file(acts, os.path.join(folder, "expected.safetensors"))
        with open(os.path.join(folder, "oracle.json"), "w") as f:
            json.dump(
                {
                    "generator": "tools/oracles/gpt2_fixtures.py",
                    "transformers": transformers.__version__,
                    "torch": torch.__version__,
                    "python": sys.version.split()[0],
                    "class": "GPT2LMHeadModel",
                    "attn_implementation": "eager",
                    "batch": B,
                    "seq": T,
                    "weight_prefix": not fx["strip_prefix"],
                    "metric": "mean_b(logits[b,T-1,metric_answer[b]] - logits[b,T-1,metric_wrong[b]])",
                },
                f,
                indent=2,
            )
            f.write("\n")
        size = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
        print(f"{fx['name']}: {size / 1024:.0f} KiB, metric {acts['metric'].item():.5f}")


if __name__ == "__main__":
    main()
