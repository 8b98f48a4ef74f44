"""The PyTorch CPU side of `pnpm bench`: the same work as src/worker.ts, with HF transformers.

GPT2LMHeadModel / GPTNeoXForCausalLM with random weights (parameters frozen), forward with hooks at the
sites, backward to the site activations only (zero deltas added at the sites, as relp does), RelP with the
same rules (LN: detached normaliser; Identity: act(x)/x~ as the local derivative), and exact activation
patching with the same algorithmic savings as relp's `fast` strategy (start at the patched block from the
cached residual, skip positions before the first difference, several patches stacked in one batch, prefix K/V
reuse: run only positions >= the pass's first patched one against the base run's cached keys/values), or the
naive one-forward-per-patch way. Prints `RESULT {json}` as its last line.

With --workload (a JSON file written by main.ts, see src/real.ts) it runs a real model instead: the GGUF file
loaded by transformers (dequantised to float32, its default attention implementation), the same token ids as
the tfjs side (right-padded; the metric reads each prompt's last real position, as relp's readout does), and
for Llama-family models the relp rules as local autograd functions with exact forwards: RMSNorm with a detached
normaliser (LN-rule), SiLU with act(x)/x~ as derivative (Identity-rule), and the gated product act(gate)*up with
each factor's gradient halved (Half-rule); the attention softmax keeps its ordinary gradient, as relp's preset.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()

SITES = ["resid_pre", "attn_out", "mlp_out"]


def mulberry32(seed):
    s = seed & 0xFFFFFFFF

    def imul(a, b):
        return (a * b) & 0xFFFFFFFF

    def nxt():
        nonlocal s
        s = (s + 0x6D2B79F5) & 0xFFFFFFFF
        t = s
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & 0xFFFFFFFF
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296

    return nxt


def make_pairs(prompts, tokens, diff_pos, seed, vocab):
    """The same prompts as src/workload.ts."""
    r = mulberry32(seed)
    out = []
    for _ in range(prompts):
        clean = [int(r() * vocab) for _ in range(tokens)]
        corrupt = list(clean)
        corrupt[diff_pos] = (clean[diff_pos] + 1 + int(r() * (vocab - 1))) % vocab
        answer = int(r() * vocab)
        out.append((clean, corrupt, answer, (answer + 1) % vocab))
    return out


def build(kind, layers):
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = GPT2Config(
            vocab_size=50257, n_positions=1024, n_embd=768, n_layer=layers, n_head=12,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            layer_norm_epsilon=1e-5,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = GPTNeoXConfig(
            vocab_size=50304, hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
            intermediate_size=3072, hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10000,
            max_position_embeddings=2048, layer_norm_eps=1e-5, use_parallel_residual=True,
            tie_word_embeddings=False, attention_bias=True, hidden_dropout=0.0, attention_dropout=0.0,
        )
        model = GPTNeoXForCausalLM(cfg)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_real(gguf):
    from transformers import AutoModelForCausalLM
    folder, name = os.path.split(os.path.abspath(gguf))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Parts:
    """The pieces of each family that the hooks and the partial runs need."""

    def __init__(self, model, kind, last=None):
        self.model = model
        self.kind = kind
        # Each prompt's last real position (right padding), or None: the last position of every row.
        self.last = last
        if kind == "llama":
            inner = model.model
            self.blocks = inner.layers
            self.attn = [b.self_attn for b in self.blocks]
            self.mlp = [b.mlp for b in self.blocks]
            self.final_norm = inner.norm
            self.norms = [m for b in self.blocks for m in (b.input_layernorm, b.post_attention_layernorm)]
            self.norms.append(inner.norm)
            self.acts = [(b.mlp, "act_fn") for b in self.blocks]
            self.gated = list(self.mlp)
        elif kind == "gpt2":
            self.blocks = model.transformer.h
            self.attn = [b.attn for b in self.blocks]
            self.mlp = [b.mlp for b in self.blocks]
            self.final_norm = model.transformer.ln_f
            self.norms = [m for b in self.blocks for m in (b.ln_1, b.ln_2)] + [model.transformer.ln_f]
            self.acts = [(b.mlp, "act") for b in self.blocks]
            self.gated = []
        else:
            self.blocks = model.gpt_neox.layers
            self.attn = [b.attention for b in self.blocks]
            self.mlp = [b.mlp for b in self.blocks]
            self.final_norm = model.gpt_neox.final_layer_norm
            self.norms = [m for b in self.blocks for m in (b.input_layernorm, b.post_attention_layernorm)]
            self.norms.append(model.gpt_neox.final_layer_norm)
            self.acts = [(b.mlp, "act") for b in self.blocks]
            self.gated = []

    def site_module(self, site, layer):
        return {"resid_pre": self.blocks, "attn_out": self.attn, "mlp_out": self.mlp}[site][layer]

    def head(self):
        return self.model.get_output_embeddings()

    def logits(self, tokens):
        """The logits [B, 1, V] at each prompt's last position (relp's readout), without the other positions."""
        if self.last is None:
            return self.model(input_ids=tokens, logits_to_keep=1).logits
        h = self.model.model(input_ids=tokens).last_hidden_state
        h = h[torch.arange(h.shape[0]), self.last]
        return self.head()(h).unsqueeze(1)

    def run_blocks(self, h, start):
        """Blocks start..L-1 from the residual h, then the final norm and the last position's logits."""
        if self.kind == "llama":
            inner = self.model.model
            T = h.shape[1]
            pos = torch.arange(T).unsqueeze(0)
            pe = inner.rotary_emb(h, position_ids=pos)
            mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
            for b in self.blocks[start:]:
                h = b(h, attention_mask=mask, position_ids=pos, position_embeddings=pe)
                h = h[0] if isinstance(h, tuple) else h
            h = self.final_norm(h)
            last = self.last if self.last is not None else torch.full((h.shape[0],), T - 1)
            if last.shape[0] != h.shape[0]:
                last = last.repeat(h.shape[0] // last.shape[0])
            return self.head()(h[torch.arange(h.shape[0]), last]).unsqueeze(1)
        if self.kind == "gpt2":
            for b in self.blocks[start:]:
                h = b(h)
                h = h[0] if isinstance(h, tuple) else h
        else:
            pos = torch.arange(h.shape[1]).unsqueeze(0)
            pe = self.model.gpt_neox.rotary_emb(h, position_ids=pos)
            for b in self.blocks[start:]:
                h = b(h, position_ids=pos, position_embeddings=pe)
                h = h[0] if isinstance(h, tuple) else h
        return self.head()(self.final_norm(h[:, -1:, :]))


def add_site_hook(parts, site, layer, fn):
    """fn(activation) -> activation at the site; returns the hook handle."""
    mod = parts.site_module(site, layer)
    if site == "resid_pre":
        def pre(_m, args, kwargs):
            return (fn(args[0]),) + tuple(args[1:]), kwargs
        return mod.register_forward_pre_hook(pre, with_kwargs=True)

    def post(_m, _inp, out):
        if isinstance(out, tuple):
            return (fn(out[0]),) + tuple(out[1:])
        return fn(out)
    return mod.register_forward_hook(post)


def logit_diff(logits, answers, wrongs):
    last = logits[:, -1, :]
    idx = torch.arange(last.shape[0])
    return (last[idx, answers] - last[idx, wrongs]).mean()


# ---- the RelP rules, as local autograd functions with exact forwards ---------------------------------------
class IdentityRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, act):
        y = act(x)
        xt = x + (torch.sign(x) + (x == 0).to(x.dtype)) * 1e-6
        ctx.save_for_backward(y / xt)
        return y

    @staticmethod
    def backward(ctx, g):
        (ratio,) = ctx.saved_tensors
        return g * ratio, None


class HalfProduct(torch.autograd.Function):
    """a*b forward; each factor's gradient halved (Half-rule)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        h = g * 0.5
        return h * b, h * a


def half_rule_mlp_forward(mlp):
    def fwd(x):
        return mlp.down_proj(HalfProduct.apply(mlp.act_fn(mlp.gate_proj(x)), mlp.up_proj(x)))
    return fwd


class RuleAct(torch.nn.Module):
    def __init__(self, act):
        super().__init__()
        self.inner = act

    def forward(self, x):
        return IdentityRule.apply(x, self.inner)


def rms_rule_forward(mod):
    eps = getattr(mod, "variance_epsilon", getattr(mod, "eps", 1e-6))

    def fwd(x):
        scale = torch.sqrt((x * x).mean(-1, keepdim=True) + eps).detach()
        return x / scale * mod.weight
    return fwd


def ln_rule_forward(mod):
    def fwd(x):
        xc = x - x.mean(-1, keepdim=True)
        scale = torch.sqrt((xc * xc).mean(-1, keepdim=True) + mod.eps).detach()
        return xc / scale * mod.weight + mod.bias
    return fwd


class Rules:
    """Installs the relp preset (LN + Identity) for the duration of a with-block."""

    def __init__(self, parts):
        self.parts = parts

    def __enter__(self):
        self.saved_norms = [(m, m.forward) for m in self.parts.norms]
        rule = rms_rule_forward if self.parts.kind == "llama" else ln_rule_forward
        for m in self.parts.norms:
            m.forward = rule(m)
        self.saved_acts = [(mod, name, getattr(mod, name)) for mod, name in self.parts.acts]
        for mod, name, act in self.saved_acts:
            setattr(mod, name, RuleAct(act))
        self.saved_mlps = [(m, m.forward) for m in self.parts.gated]
        for m in self.parts.gated:
            m.forward = half_rule_mlp_forward(m)
        return self

    def __exit__(self, *exc):
        for m, f in self.saved_norms:
            m.forward = f
        for mod, name, act in self.saved_acts:
            setattr(mod, name, act)
        for m, f in self.saved_mlps:
            m.forward = f


# ---- the methods ---------------------------------------------------------------------------------------------
def forward_metric(parts, tokens, answers, wrongs):
    with torch.no_grad():
        logits = parts.logits(tokens)
        return logit_diff(logits, answers, wrongs).item()


def cached_run(parts, tokens, answers, wrongs, L):
    cache = {}
    handles = []
    for s in SITES:
        for l in range(L):
            def rec(a, key=(s, l)):
                cache[key] = a.detach()
                return a
            handles.append(add_site_hook(parts, s, l, rec))
    try:
        with torch.no_grad():
            logits = parts.logits(tokens)
            m = logit_diff(logits, answers, wrongs).item()
    finally:
        for h in handles:
            h.remove()
    return m, cache


def atp(parts, clean, corrupt, answers, wrongs, L, rules):
    """2 forward passes and 1 backward pass to the site activations (zero deltas at the sites)."""
    _, src = cached_run(parts, clean, answers, wrongs, L)
    base = {}
    deltas = {}
    handles = []
    for s in SITES:
        for l in range(L):
            def add(a, key=(s, l)):
                d = torch.zeros_like(a, requires_grad=True)
                deltas[key] = d
                base[key] = a.detach()
                return a + d
            handles.append(add_site_hook(parts, s, l, add))
    try:
        ctx = Rules(parts) if rules else None
        if ctx:
            ctx.__enter__()
        try:
            logits = parts.logits(corrupt)
            m = logit_diff(logits, answers, wrongs)
            keys = list(deltas.keys())
            grads = torch.autograd.grad(m, [deltas[k] for k in keys])
        finally:
            if ctx:
                ctx.__exit__()
    finally:
        for h in handles:
            h.remove()
    scores = {k: ((src[k] - base[k]) * g).sum(-1).sum(0) for k, g in zip(keys, grads)}
    return scores


def patching(parts, clean, corrupt, answers, wrongs, L, strategy, diff_pos, max_rows=64):
    B, T = clean.shape
    _, src = cached_run(parts, clean, answers, wrongs, L)
    m_base, base = cached_run(parts, corrupt, answers, wrongs, L)
    scores = {}
    passes = 0
    with torch.no_grad():
        for s in SITES:
            for l in range(L):
                if strategy == "naive":
                    for p in range(T):
                        def patch(a, p=p, v=src[(s, l)]):
                            a = a.clone()
                            a[:, p] = v[:, p]
                            return a
                        h = add_site_hook(parts, s, l, patch)
                        try:
                            logits = parts.logits(corrupt)
                            scores[(s, l, p)] = logit_diff(logits, answers, wrongs).item() - m_base
                        finally:
                            h.remove()
                        passes += 1
                    continue
                positions = list(range(diff_pos, T))
                copies = max(1, max_rows // B)
                for c0 in range(0, len(positions), copies):
                    chunk = positions[c0:c0 + copies]
                    n = len(chunk)
                    mask = torch.zeros(n * B, T, 1, dtype=torch.bool)
                    for ci, p in enumerate(chunk):
                        mask[ci * B:(ci + 1) * B, p] = True
                    value = src[(s, l)].repeat(n, 1, 1)
                    resid = base[("resid_pre", l)].repeat(n, 1, 1)

                    def patch(a, mask=mask, value=value):
                        return torch.where(mask, value, a)
                    h = add_site_hook(parts, s, l, patch)
                    try:
                        if s == "resid_pre":
                            resid = patch(resid)
                            h.remove()
                        logits = parts.run_blocks(resid, l)
                    finally:
                        h.remove()
                    passes += 1
                    for ci, p in enumerate(chunk):
                        sl = logits[ci * B:(ci + 1) * B]
                        scores[(s, l, p)] = logit_diff(sl, answers, wrongs).item() - m_base
    return scores, passes


class PrefixKV:
    """Duck-typed cache for the attention modules: prepends the base run's keys/values of the positions before
    the pass (already tiled for the stacked copies) to each layer's new keys/values, as relp's KvPrefix."""

    def __init__(self, keys, values):
        self.keys = keys
        self.values = values

    def update(self, k, v, layer_idx, *args, **kwargs):
        return torch.cat([self.keys[layer_idx], k], 2), torch.cat([self.values[layer_idx], v], 2)


def base_kv(parts, tokens):
    """Each layer's keys and values [B, Hkv, T, dh] (after rotary) of a plain run."""
    with torch.no_grad():
        out = parts.model(input_ids=tokens, use_cache=True)
    layers = out.past_key_values.layers
    return [x.keys for x in layers], [x.values for x in layers]


def run_blocks_prefix(parts, h, start, offset, kv, vocab=None, joins=None):
    """Blocks start..L-1 for positions offset..T-1 only (h [n, T-offset, d]), attending to the cached keys and
    values of positions < offset; then the final norm and the last position's logits [n, 1, V] (or, with
    `vocab`, of those token ids only, as relp's ForwardOptions.vocab). `joins` {l: rows}: rows appended to the
    batch before block l (relp's ModelInput.joins)."""
    t1 = h.shape[1]
    t = offset + t1
    pos = torch.arange(offset, t).unsqueeze(0)
    allowed = torch.ones(t1, t, dtype=torch.bool).tril(offset)
    mask = torch.zeros(t1, t).masked_fill(~allowed, float("-inf"))[None, None]
    if parts.kind == "gpt2":
        def call(b, x):
            return b(x, cache=kv, attention_mask=mask)
    elif parts.kind == "llama":
        pe = parts.model.model.rotary_emb(h, position_ids=pos)

        def call(b, x):
            return b(x, attention_mask=mask, position_ids=pos, cache=kv, position_embeddings=pe)
    else:
        pe = parts.model.gpt_neox.rotary_emb(h, position_ids=pos)

        def call(b, x):
            return b(x, attention_mask=mask, position_ids=pos, layer_past=kv, position_embeddings=pe)
    for i in range(start, len(parts.blocks)):
        if joins and i in joins:
            h = torch.cat([h, joins[i]])
        h = call(parts.blocks[i], h)
        h = h[0] if isinstance(h, tuple) else h
    x = parts.final_norm(h[:, -1:, :])
    if vocab is None:
        return parts.head()(x)
    return torch.nn.functional.linear(x, parts.head().weight[vocab])


def patching_joined(parts, clean, corrupt, answers, wrongs, L, diff_pos, max_rows=64):
    """relp's fast strategy (patching.ts): every patch at position p, of any site and block, runs positions
    p..T-1 only, attending to the base run's cached keys/values before p; all patches at p share joined passes
    in which each copy joins the batch at its block from the base run's residual (at most 3·max_rows token rows
    at the last block, as relp)."""
    B, T = clean.shape
    if parts.last is not None:
        raise SystemExit("prefix patching here assumes unpadded prompts (the random-model workload)")
    _, src = cached_run(parts, clean, answers, wrongs, L)
    m_base, base = cached_run(parts, corrupt, answers, wrongs, L)
    keys, values = base_kv(parts, corrupt)
    scores = {}
    passes = 0
    V = parts.head().weight.shape[0]
    by_logits = max(1, (16 * 1024 * 1024) // (B * V))
    vocab = sorted(set(answers.tolist()) | set(wrongs.tolist()))
    index = {t: i for i, t in enumerate(vocab)}
    answers_v = torch.tensor([index[t] for t in answers.tolist()])
    wrongs_v = torch.tensor([index[t] for t in wrongs.tolist()])
    vocab = torch.tensor(vocab)
    # Copies in block order (sites in SITES order within a block), as relp's stable sort leaves them.
    keys_in_order = [(s, l) for l in range(L) for s in SITES]
    with torch.no_grad():
        for o in range(diff_pos, T):
            cap = max(1, min((3 * max_rows) // (B * (T - o)), by_logits))
            n_all = len(keys_in_order)
            size = -(-n_all // -(-n_all // cap))
            for c0 in range(0, n_all, size):
                chunk = keys_in_order[c0:c0 + size]
                n = len(chunk)
                layers = sorted({l for _, l in chunk})
                start = layers[0]
                rows_at = {l: sum(1 for _, k in chunk if k <= l) for l in range(start, L)}
                count = {l: sum(1 for _, k in chunk if k == l) for l in layers}
                resid = base[("resid_pre", start)][:, o:].repeat(count[start], 1, 1)
                joins = {l: base[("resid_pre", l)][:, o:].repeat(count[l], 1, 1) for l in layers[1:]}
                kv = PrefixKV({i: keys[i][:, :, :o].repeat(rows_at[i], 1, 1, 1) for i in range(start, L)},
                              {i: values[i][:, :, :o].repeat(rows_at[i], 1, 1, 1) for i in range(start, L)})
                handles = []
                try:
                    for ci, (s, l) in enumerate(chunk):
                        # Copy ci is patched at its site at relative position 0 (absolute o).
                        mask = torch.zeros(rows_at[l] * B, T - o, 1, dtype=torch.bool)
                        mask[ci * B:(ci + 1) * B, 0] = True
                        value = src[(s, l)][:, o:].repeat(rows_at[l], 1, 1)

                        def patch(a, mask=mask, value=value):
                            return torch.where(mask, value, a)
                        handles.append(add_site_hook(parts, s, l, patch))
                    logits = run_blocks_prefix(parts, resid, start, o, kv, vocab, joins)
                finally:
                    for h in handles:
                        h.remove()
                passes += 1
                for ci, (s, l) in enumerate(chunk):
                    sl = logits[ci * B:(ci + 1) * B]
                    scores[(s, l, o)] = logit_diff(sl, answers_v, wrongs_v).item() - m_base
    return scores, passes


def check_prefix_run(parts, tokens, offset):
    """A prefix run's last-position logits equal the model's own forward pass."""
    B = tokens.shape[0]
    z = torch.zeros(B, dtype=torch.long)
    _, cache = cached_run(parts, tokens, z, z, len(parts.blocks))
    keys, values = base_kv(parts, tokens)
    L = len(parts.blocks)
    with torch.no_grad():
        full = parts.logits(tokens)
        kv = PrefixKV({i: keys[i][:, :, :offset] for i in range(L)}, {i: values[i][:, :, :offset] for i in range(L)})
        part = run_blocks_prefix(parts, cache[("resid_pre", 0)][:, offset:], 0, offset, kv)
    return (full - part).abs().max().item()


def check_partial_run(parts, tokens):
    """The fast strategy's partial run equals the model's own forward pass."""
    _, cache = cached_run(parts, tokens, torch.zeros(tokens.shape[0], dtype=torch.long),
                          torch.zeros(tokens.shape[0], dtype=torch.long), len(parts.blocks))
    with torch.no_grad():
        full = parts.logits(tokens)
        part = parts.run_blocks(cache[("resid_pre", 0)], 0)
    return (full - part).abs().max().item()


def rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt2")
    ap.add_argument("--tasks", default="forward,atp,relp,patch-fast,patch-naive")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--patch-layers", type=int, default=12)
    ap.add_argument("--naive-reps", type=int, default=1, help="repetitions of patch-naive (no warm-up)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--diff-pos", type=int, default=8)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--workload", help="a real model's workload JSON (src/real.ts)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    t0 = time.perf_counter()
    last = None
    if a.workload:
        with open(a.workload) as f:
            w = json.load(f)
        model = load_real(w["gguf"])
        kind = model.config.model_type
        if kind not in ("llama",):
            raise SystemExit(f"the bench's PyTorch rules know Llama-family models, not {kind}")
        pairs = [(p["clean"], p["corrupt"], p["answer"], p["wrong"]) for p in w["pairs"]]
        T = max(len(p[0]) for p in pairs)
        pad = lambda ids: ids + [w["padId"]] * (T - len(ids))  # noqa: E731
        # Equal lengths (e.g. ioi-demo: 15 tokens each) need no padding, so prefix patching applies as on relp's side.
        unpadded = all(len(p[0]) == T and len(p[1]) == T for p in pairs)
        last = None if unpadded else torch.tensor([len(p[0]) - 1 for p in pairs])
        a.diff_pos = min(next(i for i, (x, y) in enumerate(zip(p[0], p[1])) if x != y) for p in pairs)
        pairs = [(pad(c), pad(k), x, y) for c, k, x, y in pairs]
        L = model.config.num_hidden_layers
    else:
        kind = a.model
        model = build(a.model, 12)
        vocab = model.config.vocab_size
        pairs = make_pairs(a.prompts, a.tokens, a.diff_pos, 1234, vocab)
        L = 12
    build_s = time.perf_counter() - t0
    parts = Parts(model, kind, last)
    clean = torch.tensor([p[0] for p in pairs])
    corrupt = torch.tensor([p[1] for p in pairs])
    answers = torch.tensor([p[2] for p in pairs])
    wrongs = torch.tensor([p[3] for p in pairs])

    results = []

    def timed(name, layers, fn, reps=None, warmup=None):
        reps = a.reps if reps is None else reps
        warmup = a.warmup if warmup is None else warmup
        times = []
        cpu = []
        for i in range(warmup + reps):
            t = time.perf_counter()
            c = time.process_time()
            fn()
            dt = time.perf_counter() - t
            dc = time.process_time() - c
            if i >= warmup:
                times.append(dt)
                cpu.append(dc)
            label = "warm-up" if i < warmup else f"rep {i - warmup + 1}"
            print(f"  [torch {a.model}] {name} {label}: {dt:.3f} s", file=sys.stderr)
        results.append({"task": name, "layers": layers, "median": statistics.median(times), "times": times,
                        "cpuMedian": statistics.median(cpu),
                        "maxRssBytes": rss_bytes()})

    small = None
    for task in a.tasks.split(","):
        if task == "forward":
            timed("forward", L, lambda: forward_metric(parts, clean, answers, wrongs))
        elif task in ("atp", "relp"):
            timed(task, L, lambda r=(task == "relp"): atp(parts, clean, corrupt, answers, wrongs, L, r))
        elif task in ("patch-fast", "patch-naive"):
            if small is None:
                # On a real model, patching runs on the whole model.
                same = a.workload or a.patch_layers == L
                small = parts if same else Parts(build(a.model, a.patch_layers), a.model)
                err = check_partial_run(small, clean)
                if err > 1e-3:
                    raise SystemExit(f"partial run differs from the model's forward by {err}")
                if small.last is None:
                    err = check_prefix_run(small, clean, a.diff_pos)
                    if err > 1e-3:
                        raise SystemExit(f"prefix run differs from the model's forward by {err}")
            strategy = task.split("-")[1]
            pl = L if a.workload else a.patch_layers
            if strategy == "fast" and small.last is None:
                # relp's fast strategy: prefix K/V reuse and joined passes (a padded real workload keeps
                # full-length passes).
                timed(task, pl, lambda pl=pl: patching_joined(small, clean, corrupt, answers, wrongs, pl, a.diff_pos))
            else:
                timed(task, pl,
                      lambda s=strategy, pl=pl: patching(small, clean, corrupt, answers, wrongs, pl, s, a.diff_pos),
                      **({"reps": a.naive_reps, "warmup": 0} if strategy == "naive" else {}))
        else:
            raise SystemExit(f"unknown task {task}")

    profile = None
    if a.profile:
        from torch.profiler import ProfilerActivity, profile as tprofile
        with tprofile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            atp(parts, clean, corrupt, answers, wrongs, L, True)
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
        profile = [{"kernel": e.key, "ms": e.self_cpu_time_total / 1000, "calls": e.count} for e in rows]

    print("RESULT " + json.dumps({
        "backend": "pytorch",
        "model": a.model,
        "layers": L,
        "attention": getattr(model.config, "_attn_implementation", None),
        "buildSeconds": build_s,
        "maxRssBytes": rss_bytes(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "results": results,
        "profile": profile,
    }))


if __name__ == "__main__":
    main()
