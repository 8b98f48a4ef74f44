"""Reference values for relp's attribution engine, computed independently with PyTorch + HF transformers.

For random-weight GPT-2 and GPT-NeoX (Pythia) checkpoints it computes, literally and slowly:
  - activation patching (one forward pass per patched cell, denoising and noising),
  - attribution patching (AtP), relevance patching with the `relp` and `relp-ah` rule presets (rules written as
    forward-exact patches on the HF modules: detached LayerNorm scale, Identity-rule ratio for the activation,
    detached attention pattern), and integrated gradients over the input embeddings,
for resid_pre / attn_out / mlp_out (and resid_mid where it exists) per [layer][position], per head on z and per
neuron on mlp_post, with the logit-difference metric at the last position (docs/method.md §3–§12).

Writes fixtures/attribution/<model>/{config.json, model.safetensors, expected.json}. Run from the repo root:
    python3 tools/oracles/attribution_reference.py
Needs torch 2.13 (CPU), transformers 5.x, safetensors.
"""

import json
import math
import os
import sys

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "attribution")
IG_STEPS = 5
torch.use_deterministic_algorithms(True)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.dim() == 1:  # norm weights
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def make_gpt2():
    cfg = GPT2Config(n_layer=3, n_embd=48, n_head=4, vocab_size=101, n_positions=32, activation_function="gelu_new",
                     attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
    cfg._attn_implementation = "eager"
    m = GPT2LMHeadModel(cfg).eval()
    randomize(m, 1)
    m.tie_weights()
    return m


def make_pythia():
    cfg = GPTNeoXConfig(num_hidden_layers=3, hidden_size=48, num_attention_heads=4, intermediate_size=192,
                        vocab_size=103, max_position_embeddings=32, rotary_pct=0.25, rotary_emb_base=10000,
                        use_parallel_residual=True, hidden_act="gelu", attention_dropout=0.0, hidden_dropout=0.0,
                        tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    m = GPTNeoXForCausalLM(cfg).eval()
    randomize(m, 2)
    return m


class Arch:
    """Where the sites live in an HF model (TransformerLens meanings)."""

    def __init__(self, model):
        self.model = model
        if isinstance(model, GPT2LMHeadModel):
            t = model.transformer
            self.blocks = list(t.h)
            self.attn = [b.attn for b in self.blocks]
            self.mlp = [b.mlp for b in self.blocks]
            self.o_proj = [b.attn.c_proj for b in self.blocks]
            self.down = [b.mlp.c_proj for b in self.blocks]
            self.norm_owners = [(b, "ln_1") for b in self.blocks] + [(b, "ln_2") for b in self.blocks] + [(t, "ln_f")]
            self.embed = t.wte
            self.parallel = False
            self.n_heads = model.config.n_head
        else:
            t = model.gpt_neox
            self.blocks = list(t.layers)
            self.attn = [b.attention for b in self.blocks]
            self.mlp = [b.mlp for b in self.blocks]
            self.o_proj = [b.attention.dense for b in self.blocks]
            self.down = [b.mlp.dense_4h_to_h for b in self.blocks]
            self.norm_owners = ([(b, "input_layernorm") for b in self.blocks]
                                + [(b, "post_attention_layernorm") for b in self.blocks] + [(t, "final_layer_norm")])
            self.embed = t.embed_in
            self.parallel = model.config.use_parallel_residual
            self.n_heads = model.config.num_attention_heads
        self.n_layers = len(self.blocks)


class LNRule(torch.nn.Module):
    """LayerNorm whose normaliser is a constant in the backward pass (forward equal up to rounding)."""

    def __init__(self, ln):
        super().__init__()
        self.ln = ln

    def forward(self, x):
        xc = x - x.mean(-1, keepdim=True)
        scale = torch.sqrt((xc * xc).mean(-1, keepdim=True) + self.ln.eps).detach()
        return xc / scale * self.ln.weight + self.ln.bias


class IdentityRule(torch.nn.Module):
    """act(x) forward; backward multiplies by act(x)/x̃, x̃ = x + (sign(x) + [x = 0])·1e-6."""

    def __init__(self, act):
        super().__init__()
        self.act = act

    def forward(self, x):
        y = self.act(x)
        xt = x + (torch.sign(x) + (x == 0).to(x.dtype)) * 1e-6
        return y.detach() + (x - x.detach()) * (y / xt).detach()


class Rules:
    """Installs rule modules for the duration of a with-block; always restores the model."""

    def __init__(self, arch, preset):
        self.arch, self.preset = arch, preset

    def __enter__(self):
        self.saved = []
        if self.preset in ("relp", "relp-ah"):
            for owner, name in self.arch.norm_owners:
                ln = getattr(owner, name)
                self.saved.append((owner, name, ln))
                setattr(owner, name, LNRule(ln))
            for mlp in self.arch.mlp:
                self.saved.append((mlp, "act", mlp.act))
                mlp.act = IdentityRule(mlp.act)
        self.softmax = torch.nn.functional.softmax
        if self.preset == "relp-ah":
            plain = self.softmax
            torch.nn.functional.softmax = lambda *a, **k: plain(*a, **k).detach()
        return self

    def __exit__(self, *exc):
        for owner, name, mod in self.saved:
            setattr(owner, name, mod)
        torch.nn.functional.softmax = self.softmax


def metric(logits, pairs):
    last = logits[:, -1, :]  # all prompts have equal length here
    ans = torch.tensor([p["answer"] for p in pairs])
    wrong = torch.tensor([p["wrong"] for p in pairs])
    idx = torch.arange(len(pairs))
    return (last[idx, ans] - last[idx, wrong]).mean()


class Sites:
    """Forward hooks that record, patch or differentiate the sites."""

    def __init__(self, arch):
        self.arch = arch
        self.handles = []
        self.acts = {}
        self.patch = None  # (site, layer, fn(tensor) -> tensor)

    def _put(self, site, layer, x):
        if self.patch is not None and self.patch[0] == site and self.patch[1] == layer:
            x = self.patch[2](x, self.acts)
        if x.requires_grad:
            x.retain_grad()
        self.acts[(site, layer)] = x
        return x

    def __enter__(self):
        a = self.arch
        for l in range(a.n_layers):
            def pre_block(mod, args, kwargs, l=l):
                if args:
                    x = self._put("resid_pre", l, args[0])
                    return (x,) + tuple(args[1:]), kwargs
                x = self._put("resid_pre", l, kwargs["hidden_states"])
                kwargs = dict(kwargs)
                kwargs["hidden_states"] = x
                return args, kwargs

            def post_attn(mod, args, out, l=l):
                x = self._put("attn_out", l, out[0])
                return (x,) + tuple(out[1:])

            def post_mlp(mod, args, out, l=l):
                return self._put("mlp_out", l, out)

            def pre_o(mod, args, l=l):
                x = args[0]
                B, T, D = x.shape
                z = self._put("z", l, x.reshape(B, T, a.n_heads, D // a.n_heads))
                return (z.reshape(B, T, D),)

            def pre_down(mod, args, l=l):
                return (self._put("mlp_post", l, args[0]),)

            self.handles += [
                a.blocks[l].register_forward_pre_hook(pre_block, with_kwargs=True),
                a.attn[l].register_forward_hook(post_attn),
                a.mlp[l].register_forward_hook(post_mlp),
                a.o_proj[l].register_forward_pre_hook(pre_o),
                a.down[l].register_forward_pre_hook(pre_down),
            ]
            if not a.parallel:
                # resid_mid: the input of the second norm in a sequential block.
                owner, name = a.norm_owners[a.n_layers + l]

                def pre_ln2(mod, args, l=l):
                    return (self._put("resid_mid", l, args[0]),)

                self.handles.append(getattr(owner, name).register_forward_pre_hook(pre_ln2))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def run(arch, ids, pairs, grad=False, patch=None, embeds=None, rules="none"):
    with Rules(arch, rules), Sites(arch) as s:
        s.patch = patch
        if grad:
            if embeds is None:
                out = arch.model(input_ids=ids)
            else:
                out = arch.model(inputs_embeds=embeds)
            m = metric(out.logits, pairs)
            m.backward()
        else:
            with torch.no_grad():
                out = arch.model(input_ids=ids) if embeds is None else arch.model(inputs_embeds=embeds)
                m = metric(out.logits, pairs)
        return m.item(), s.acts


SITES = ["resid_pre", "resid_mid", "attn_out", "mlp_out"]


def grid_position(x):  # [B,T,...] -> [T]
    return x.sum(dim=[d for d in range(x.dim()) if d != 1]).tolist()


def grid_head(x):  # [B,T,H,dh] -> [T][H]
    return x.sum(dim=(0, 3)).tolist()


def grid_neuron(x):  # [B,T,N] -> [T][N]
    return x.sum(dim=0).tolist()


def gradient_scores(arch, clean, corrupt, pairs, rules, direction):
    base, source = (corrupt, clean) if direction == "denoising" else (clean, corrupt)
    m_src, src = run(arch, source, pairs)
    m_base, acts = run(arch, base, pairs, grad=True, rules=rules)
    return m_src, m_base, scores_from(arch, src, acts, lambda k: acts[k].grad)


def scores_from(arch, src, base, grad_of):
    res = {}
    for site in SITES + ["z", "mlp_post"]:
        if (site, 0) not in base:
            continue
        rows = []
        for l in range(arch.n_layers):
            prod = (src[(site, l)] - base[(site, l)]).detach() * grad_of((site, l))
            rows.append(grid_head(prod) if site == "z" else grid_neuron(prod) if site == "mlp_post" else grid_position(prod))
        res[site] = rows
    return res


def ig_scores(arch, clean, corrupt, pairs, direction):
    base, source = (corrupt, clean) if direction == "denoising" else (clean, corrupt)
    m_src, src = run(arch, source, pairs)
    m_base, bacts = run(arch, base, pairs)
    e_base = arch.embed(base).detach()
    e_src = arch.embed(source).detach()
    sums = {}
    for k in range(1, IG_STEPS + 1):
        a = k / IG_STEPS
        emb = (e_base + a * (e_src - e_base)).requires_grad_(True)
        _, acts = run(arch, None, pairs, grad=True, embeds=emb)
        for key, x in acts.items():
            sums[key] = sums.get(key, 0) + x.grad.detach()
    return m_src, m_base, scores_from(arch, src, bacts, lambda key: sums[key] / IG_STEPS)


def patching_scores(arch, clean, corrupt, pairs, direction):
    base, source = (corrupt, clean) if direction == "denoising" else (clean, corrupt)
    m_src, src = run(arch, source, pairs)
    m_base, _ = run(arch, base, pairs)
    T = base.shape[1]
    res = {}
    # Per-neuron patching (thousands of passes) is left out of the reference; the engine's neuron granularity is
    # checked against the gradient methods here and against its own naive path in the tests.
    for site in SITES + ["z"]:
        if (site, 0) not in src:
            continue
        rows = []
        for l in range(arch.n_layers):
            v = src[(site, l)]
            row = []
            for p in range(T):
                if site in ("z", "mlp_post"):
                    cells = []
                    for i in range(v.shape[2]):
                        def fn(x, acts, p=p, i=i, v=v):
                            x = x.clone()
                            x[:, p, i] = v[:, p, i]
                            return x
                        m, _ = run(arch, base, pairs, patch=(site, l, fn))
                        cells.append(m - m_base)
                    row.append(cells)
                else:
                    if site == "resid_mid":
                        # The residual itself must change, not only the second norm's input: patch attn_out so
                        # that resid_pre + attn_out equals the source resid_mid at p.
                        def fn(x, acts, p=p, v=v, l=l):
                            x = x.clone()
                            x[:, p] = v[:, p] - acts[("resid_pre", l)][:, p]
                            return x
                        m, _ = run(arch, base, pairs, patch=("attn_out", l, fn))
                    else:
                        def fn(x, acts, p=p, v=v):
                            x = x.clone()
                            x[:, p] = v[:, p]
                            return x
                        m, _ = run(arch, base, pairs, patch=(site, l, fn))
                    row.append(m - m_base)
            rows.append(row)
        res[site] = rows
    return m_src, m_base, res


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    for name, make in [("gpt2-ref", make_gpt2), ("pythia-ref", make_pythia)]:
        model = make()
        arch = Arch(model)
        V = model.config.vocab_size
        g = torch.Generator().manual_seed(7)
        B, T = 3, 9
        clean = torch.randint(0, V, (B, T), generator=g)
        corrupt = clean.clone()
        corrupt[0, 2] = (clean[0, 2] + 5) % V
        corrupt[0, 5] = (clean[0, 5] + 11) % V
        corrupt[1, 5] = (clean[1, 5] + 3) % V
        corrupt[2, 3] = (clean[2, 3] + 17) % V
        pairs = [{"clean": clean[b].tolist(), "corrupt": corrupt[b].tolist(),
                  "answer": int((clean[b, -1] * 7 + 3) % V), "wrong": int((clean[b, -1] * 13 + 5) % V)}
                 for b in range(B)]
        results = {}
        for direction in ["denoising", "noising"]:
            for method, fn in [("activation-patching", lambda d: patching_scores(arch, clean, corrupt, pairs, d)),
                               ("atp", lambda d: gradient_scores(arch, clean, corrupt, pairs, "none", d)),
                               ("relp", lambda d: gradient_scores(arch, clean, corrupt, pairs, "relp", d)),
                               ("relp-ah", lambda d: gradient_scores(arch, clean, corrupt, pairs, "relp-ah", d)),
                               ("ig", lambda d: ig_scores(arch, clean, corrupt, pairs, d))]:
                m_src, m_base, scores = fn(direction)
                m_clean, m_corrupt = (m_src, m_base) if direction == "denoising" else (m_base, m_src)
                results[f"{method}|{direction}"] = {"metric": {"clean": m_clean, "corrupt": m_corrupt},
                                                    "scores": scores}
                print(name, method, direction, "done", file=sys.stderr)
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        for extra in ["generation_config.json"]:
            p = os.path.join(folder, extra)
            if os.path.exists(p):
                os.remove(p)
        with open(os.path.join(folder, "expected.json"), "w") as f:
            json.dump({"generator": "tools/oracles/attribution_reference.py", "torch": torch.__version__,
                       "transformers": transformers.__version__, "ig_steps": IG_STEPS, "pairs": pairs,
                       "results": results}, f)


if __name__ == "__main__":
    main()
