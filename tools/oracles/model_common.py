"""Helpers shared by the model parity oracles (pythia_fixtures.py, llama_fixtures.py, gemma_fixtures.py,
gpt2_fixtures.py): the fixture folders, the logit-difference metric, the capture of a hooked forward pass and the
files written."""

from __future__ import annotations

import json
import os
import shutil
import sys

import safetensors
import safetensors.torch
import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fixtures", "models")


def save_model(name: str, model) -> str:
    """A fresh fixtures/models/<name>/ holding the model as save_pretrained writes it (no generation_config.json)."""
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    model.save_pretrained(folder, safe_serialization=True)
    gen_cfg = os.path.join(folder, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)
    return folder


def write_fixture(name: str, config, model_cls, batch: int, seq: int, gen: torch.Generator, *, init, capture,
                  rewrite=None, check=None) -> int:
    """The flow of every family's fixture: random weights (`init(model, gen)`), the HF folder (`rewrite(folder)`
    may respell it as real checkpoints do), the model reloaded from the folder (the reference is what HF makes of
    the files, not the in-memory model; `check(model)` looks at it), random tokens, `capture(model, tokens, gen)`
    and expected.safetensors. Returns the folder's size in bytes."""
    model = model_cls(config).eval()
    init(model, gen)
    folder = save_model(name, model)
    if rewrite is not None:
        rewrite(folder)
    model = model_cls.from_pretrained(folder, attn_implementation="eager").eval()
    if check is not None:
        check(model)
    tokens = torch.randint(0, config.vocab_size, (batch, seq), generator=gen)
    return write_expected(name, capture(model, tokens, gen), expected_metadata(batch, seq))


def answer_and_wrong(vocab: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random answer tokens and, per prompt, a different wrong token."""
    answer = torch.randint(0, vocab, (batch,), generator=gen)
    wrong = (answer + 1 + torch.randint(0, vocab - 1, (batch,), generator=gen)) % vocab
    return answer, wrong


class Capture:
    """Activations and gradient handles of one hooked forward pass; q and k after rotary come from a spy on the
    modeling module's apply_rotary_pos_emb, installed until `close`."""

    def __init__(self, modeling) -> None:
        self.acts: dict[str, torch.Tensor] = {}
        self.grads_of: dict[str, torch.Tensor] = {}  # tensors whose gradient we want
        self.hooks: list = []
        self.rotary_calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.modeling = modeling
        self.orig_rotary = modeling.apply_rotary_pos_emb

        def rotary_spy(q, k, cos, sin, *args, **kwargs):
            qo, ko = self.orig_rotary(q, k, cos, sin, *args, **kwargs)
            self.rotary_calls.append((qo, ko))
            return qo, ko

        modeling.apply_rotary_pos_emb = rotary_spy

    def put(self, key: str, t: torch.Tensor, grad: bool = False) -> None:
        self.acts[key] = t.detach().clone()
        if grad:
            t.retain_grad()
            self.grads_of[key] = t

    def put_z(self, l: int, z: torch.Tensor, weight: torch.Tensor, H: int, dh: int) -> None:
        """z [B,T,H,dh] (with its gradient) and each head's result through the output projection `weight`."""
        b, t, _ = z.shape
        self.put(f"z.{l}", z.view(b, t, H, dh))
        self.grads_of[f"z.{l}"] = z
        z.retain_grad()
        w = weight.detach()  # [d, H*dh] (out, in)
        self.acts[f"result.{l}"] = torch.einsum("bthi,ohi->btho", z.detach().view(b, t, H, dh), w.view(-1, H, dh))

    def hook_block(self, l: int, layer, *, scale, ln1, ln2, v, attn, o_proj, attn_out, mlp_pre, mlp_down, mlp_out,
                   H: int, dh: int, resid_mid: bool = True) -> None:
        """Hooks decoder block `l` at every relp site. A family names its modules: the two norms (their inputs'
        `scale`), `v` = (module, picks v [B,T,Hkv,dh] from its output), the attention module (its second output
        is the pattern), `o_proj` (its input is z), the modules whose outputs are attn_out and mlp_pre, `mlp_down`
        (its input is mlp_post) and the module whose output is mlp_out. `resid_mid`: the input of ln2 is the
        residual stream between attention and MLP (not in a parallel block)."""
        put = self.put
        v_module, v_of = v

        def pre_layer(mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            put(f"resid_pre.{l}", x, grad=True)

        def post_layer(mod, args, kwargs, out):
            put(f"resid_post.{l}", out[0] if isinstance(out, tuple) else out)

        def pre_ln2(mod, args):
            put(f"ln2_scale.{l}", scale(args[0]))
            if resid_mid:
                put(f"resid_mid.{l}", args[0])

        self.hooks += [
            layer.register_forward_pre_hook(pre_layer, with_kwargs=True),
            layer.register_forward_hook(post_layer, with_kwargs=True),
            ln1.register_forward_pre_hook(lambda mod, args: put(f"ln1_scale.{l}", scale(args[0]))),
            ln2.register_forward_pre_hook(pre_ln2),
            v_module.register_forward_hook(lambda mod, args, out: put(f"v.{l}", v_of(out))),
            attn.register_forward_hook(lambda mod, args, kwargs, out: put(f"pattern.{l}", out[1]), with_kwargs=True),
            o_proj.register_forward_pre_hook(lambda mod, args: self.put_z(l, args[0], mod.weight, H, dh)),
            attn_out.register_forward_hook(lambda mod, args, out: put(f"attn_out.{l}", out, grad=True)),
            mlp_pre.register_forward_hook(lambda mod, args, out: put(f"mlp_pre.{l}", out)),
            mlp_down.register_forward_pre_hook(lambda mod, args: put(f"mlp_post.{l}", args[0], grad=True)),
            mlp_out.register_forward_hook(lambda mod, args, out: put(f"mlp_out.{l}", out, grad=True)),
        ]

    def hook_final_norm(self, norm, scale) -> None:
        self.hooks.append(norm.register_forward_pre_hook(lambda mod, args: self.put("ln_final_scale.0", scale(args[0]))))

    def close(self) -> None:
        self.modeling.apply_rotary_pos_emb = self.orig_rotary
        for h in self.hooks:
            h.remove()

    def expected(self, logits: torch.Tensor, tokens: torch.Tensor, gen: torch.Generator, n_layers: int, H: int,
                 dh: int) -> dict[str, torch.Tensor]:
        """Backpropagates the metric (sum over the batch of logit(answer) − logit(wrong) at the last position) and
        returns the tensors for expected.safetensors."""
        assert len(self.rotary_calls) == n_layers, len(self.rotary_calls)
        for l, (q, k) in enumerate(self.rotary_calls):
            self.acts[f"q.{l}"] = q.detach().transpose(1, 2).clone()  # [B,H,T,dh] -> [B,T,H,dh]
            self.acts[f"k.{l}"] = k.detach().transpose(1, 2).clone()
        batch, seq = tokens.shape
        answer, wrong = answer_and_wrong(logits.shape[-1], batch, gen)
        last = logits[:, -1, :]
        metric = (last.gather(1, answer[:, None]) - last.gather(1, wrong[:, None])).sum()
        metric.backward()
        tensors: dict[str, torch.Tensor] = {
            "tokens": tokens.to(torch.int32),
            "answer": answer.to(torch.int32),
            "wrong": wrong.to(torch.int32),
            "metric": metric.detach().reshape(1),
            "logits": logits.detach(),
        }
        tensors.update(self.acts)
        for key, t in self.grads_of.items():
            assert t.grad is not None, key
            g = t.grad.detach()
            if key.startswith("z."):
                g = g.view(batch, seq, H, dh)
            tensors[f"grad.{key}"] = g
        return {k: v.contiguous().float() if v.dtype != torch.int32 else v.contiguous() for k, v in tensors.items()}


def expected_metadata(batch: int, seq: int) -> dict[str, str]:
    """The metadata of expected.safetensors."""
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "metric": "sum_b logits[b,-1,answer[b]] - logits[b,-1,wrong[b]]",
        "batch": str(batch),
        "seq": str(seq),
    }


def write_expected(name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> int:
    """Writes fixtures/models/<name>/expected.safetensors; returns the folder's size in bytes."""
    folder = os.path.join(OUT, name)
    safetensors.torch.save_file(tensors, os.path.join(folder, "expected.safetensors"), metadata=metadata)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"{name}: {len(tensors)} tensors, {size / 1024:.0f} KiB, metric {tensors['metric'].item():.4f}")
    return size


def write_versions(file: str, generator: str, fixtures: list[str]) -> None:
    """fixtures/models/<file>: the generator, the exact library versions and the fixtures it wrote."""
    with open(os.path.join(OUT, file), "w") as f:
        json.dump({
            "generator": generator,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "safetensors": safetensors.__version__,
            "python": sys.version.split()[0],
            "fixtures": fixtures,
        }, f, indent=2)
        f.write("\n")
