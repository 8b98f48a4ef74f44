"""Tiny SAE fixtures for @relp/sae's format readers (run: python3 tools/oracles/sae_fixtures.py).

Writes fixtures/sae/:
- dl-<kind>[-<dtype>]/ae.pt + config.json: dictionary_learning checkpoints (torch.save of a module's state_dict,
  modules that mirror dictionary_learning's AutoEncoder, AutoEncoderTopK and JumpReluAutoEncoder parameter layout),
  in float32, float16 and bfloat16, plus one whose tensors are strided views into a shared storage with offsets.
- saelens-<kind>/cfg.json + sae_weights.safetensors (+ activation_scaler.json): SAELens folders, old and new cfg
  styles, with and without expected_average_only_in.
- each folder's expected.safetensors: the tensors as float32, an input x, and the features f and reconstruction
  x_hat computed here with each library's own formulas (written out below), for the TypeScript tests to match.
"""

import json
import os
from collections import OrderedDict

import torch
from safetensors.torch import save_file
from torch import nn

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "sae")
D_IN, D_SAE, K = 6, 10, 3


def rand(g, *shape, scale=1.0):
    return (torch.randn(*shape, generator=g) * scale).float()


class AutoEncoder(nn.Module):  # dictionary_learning.dictionary.AutoEncoder layout
    def __init__(self, g):
        super().__init__()
        self.bias = nn.Parameter(rand(g, D_IN, scale=0.3))
        self.encoder = nn.Linear(D_IN, D_SAE, bias=True)
        self.decoder = nn.Linear(D_SAE, D_IN, bias=False)
        with torch.no_grad():
            self.encoder.weight.copy_(rand(g, D_SAE, D_IN))
            self.encoder.bias.copy_(rand(g, D_SAE, scale=0.5))
            self.decoder.weight.copy_(rand(g, D_IN, D_SAE))

    def run(self, x):  # encode: relu(encoder(x − bias)); decode: decoder(f) + bias
        f = torch.relu(self.encoder(x - self.bias))
        return f, self.decoder(f) + self.bias


class AutoEncoderTopK(nn.Module):  # dictionary_learning.trainers.top_k.AutoEncoderTopK layout
    def __init__(self, g):
        super().__init__()
        self.register_buffer("k", torch.tensor(K, dtype=torch.int))
        self.register_buffer("threshold", torch.tensor(-1.0, dtype=torch.float32))
        self.decoder = nn.Linear(D_SAE, D_IN, bias=False)
        self.encoder = nn.Linear(D_IN, D_SAE)
        self.b_dec = nn.Parameter(rand(g, D_IN, scale=0.3))
        with torch.no_grad():
            self.decoder.weight.copy_(rand(g, D_IN, D_SAE))
            self.encoder.weight.copy_(rand(g, D_SAE, D_IN))
            self.encoder.bias.copy_(rand(g, D_SAE, scale=0.5))

    def run(self, x):  # relu(encoder(x − b_dec)), keep the top k per row; decode: decoder(f) + b_dec
        post = torch.relu(self.encoder(x - self.b_dec))
        top = post.topk(K, dim=-1)
        f = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
        return f, self.decoder(f) + self.b_dec


class JumpReluAutoEncoder(nn.Module):  # dictionary_learning.dictionary.JumpReluAutoEncoder layout
    def __init__(self, g):
        super().__init__()
        self.W_enc = nn.Parameter(rand(g, D_IN, D_SAE))
        self.b_enc = nn.Parameter(rand(g, D_SAE, scale=0.5))
        self.W_dec = nn.Parameter(rand(g, D_SAE, D_IN))  # rows deliberately not unit norm
        self.b_dec = nn.Parameter(rand(g, D_IN, scale=0.3))
        self.threshold = nn.Parameter(rand(g, D_SAE, scale=0.3).abs())

    def run(self, x):  # apply_b_dec_to_input False; f scaled by ‖W_dec row‖ and unscaled in decode
        pre = x @ self.W_enc + self.b_enc
        f = torch.relu(pre * (pre > self.threshold)) * self.W_dec.norm(dim=1)
        return f, (f / self.W_dec.norm(dim=1)) @ self.W_dec + self.b_dec


def round_trip(module, dtype):
    """The module's weights rounded through dtype (what ae.pt stores) and back to float32."""
    with torch.no_grad():
        for p in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            p.copy_(p.to(dtype).float())


def dl_fixture(name, cls, dict_class, seed, dtype=torch.float32, strided=False, submodule="resid_post_layer_3"):
    g = torch.Generator().manual_seed(seed)
    m = cls(g)
    round_trip(m, dtype)
    x = rand(g, 5, D_IN, scale=1.5)
    with torch.no_grad():
        f, xhat = m.run(x)
    sd = m.state_dict()
    if dtype != torch.float32:
        sd = OrderedDict((k, v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items())
        sd._metadata = m.state_dict()._metadata
    if strided:
        # Each float tensor becomes a view into one larger storage: transposed strides and an offset.
        meta = sd._metadata
        out = OrderedDict()
        for k, v in sd.items():
            if v.is_floating_point() and v.dim() == 2:
                big = torch.zeros(v.shape[1] + 2, v.shape[0] + 3, dtype=v.dtype)
                big[1 : 1 + v.shape[1], 2 : 2 + v.shape[0]] = v.T
                out[k] = big[1 : 1 + v.shape[1], 2 : 2 + v.shape[0]].T  # non-contiguous, offset
                assert not out[k].is_contiguous() and out[k].storage_offset() > 0
            elif v.is_floating_point() and v.dim() == 1:
                big = torch.zeros(2 * v.shape[0] + 5, dtype=v.dtype)
                big[3 : 3 + 2 * v.shape[0] : 2] = v
                out[k] = big[3 : 3 + 2 * v.shape[0] : 2]  # stride 2, offset 3
            else:
                out[k] = v
        out._metadata = meta
        sd = out
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    torch.save(sd, os.path.join(folder, "ae.pt"))
    config = {
        "trainer": {
            "dict_class": dict_class,
            "trainer_class": {"AutoEncoder": "StandardTrainer", "AutoEncoderTopK": "TopKTrainer",
                              "JumpReluAutoEncoder": "JumpReluTrainer"}[dict_class],
            "activation_dim": D_IN,
            "dict_size": D_SAE,
            "layer": 3,
            "lm_name": "tiny",
            "submodule_name": submodule,
            **({"k": K} if dict_class == "AutoEncoderTopK" else {}),
        },
        "buffer": {"d_submodule": D_IN, "ctx_len": 16},
    }
    with open(os.path.join(folder, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    expected = {k: v.float().contiguous() for k, v in m.state_dict().items() if v.is_floating_point() and v.dim() > 0}
    expected.update({"x": x, "f": f.contiguous(), "x_hat": xhat.contiguous()})
    save_file(expected, os.path.join(folder, "expected.safetensors"))


def saelens_fixture(name, arch, seed, style, scale=None, hook="blocks.3.hook_resid_post"):
    g = torch.Generator().manual_seed(seed)
    W_enc, b_enc = rand(g, D_IN, D_SAE), rand(g, D_SAE, scale=0.5)
    W_dec, b_dec = rand(g, D_SAE, D_IN), rand(g, D_IN, scale=0.3)
    threshold = rand(g, D_SAE, scale=0.3).abs()
    x = rand(g, 5, D_IN, scale=1.5) * (1 / scale if scale else 1)
    # SAELens: x_in = x·s (expected_average_only_in), minus b_dec when apply_b_dec_to_input; pre = x_in W_enc + b_enc;
    # relu / jumprelu (pre > θ) / topk of relu; x_hat = (f W_dec + b_dec) / s.
    s = scale or 1.0
    pre = (x * s - b_dec) @ W_enc + b_enc
    if arch == "standard":
        f = torch.relu(pre)
    elif arch == "jumprelu":
        f = torch.relu(pre) * (pre > threshold)
    else:
        post = torch.relu(pre)
        top = post.topk(K, dim=-1)
        f = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
    xhat = (f @ W_dec + b_dec) / s
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    weights = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if arch == "jumprelu":
        weights["threshold"] = threshold
    save_file(weights, os.path.join(folder, "sae_weights.safetensors"))
    norm = "expected_average_only_in" if scale else "none"
    if style == "old":
        cfg = {
            "architecture": "standard" if arch == "topk" else arch,
            "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu", "model_name": "tiny",
            "hook_name": hook, "hook_layer": int(hook.split(".")[1]), "hook_head_index": None,
            "activation_fn_str": "topk" if arch == "topk" else "relu",
            "activation_fn_kwargs": {"k": K} if arch == "topk" else {},
            "apply_b_dec_to_input": True, "finetuning_scaling_factor": False, "context_size": 16,
            "prepend_bos": True, "normalize_activations": norm,
        }
    else:
        cfg = {
            "architecture": arch, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu",
            "apply_b_dec_to_input": True, "normalize_activations": norm, "reshape_activations": "none",
            **({"k": K} if arch == "topk" else {}),
            "metadata": {"model_name": "tiny", "hook_name": hook, "hook_head_index": None, "prepend_bos": True},
        }
    with open(os.path.join(folder, "cfg.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    if scale:
        with open(os.path.join(folder, "activation_scaler.json"), "w") as fh:
            json.dump({"scaling_factor": scale}, fh)
    expected = dict(weights)
    expected.update({"x": x, "f": f.contiguous(), "x_hat": xhat.contiguous()})
    save_file(expected, os.path.join(folder, "expected.safetensors"))


if __name__ == "__main__":
    dl_fixture("dl-relu", AutoEncoder, "AutoEncoder", 1)
    dl_fixture("dl-topk", AutoEncoderTopK, "AutoEncoderTopK", 2, submodule="mlp_out_layer3")
    dl_fixture("dl-jumprelu", JumpReluAutoEncoder, "JumpReluAutoEncoder", 3, submodule="attn_out_layer3")
    dl_fixture("dl-relu-f16", AutoEncoder, "AutoEncoder", 4, dtype=torch.float16)
    dl_fixture("dl-topk-bf16", AutoEncoderTopK, "AutoEncoderTopK", 5, dtype=torch.bfloat16)
    dl_fixture("dl-relu-strided", AutoEncoder, "AutoEncoder", 6, strided=True)
    saelens_fixture("saelens-standard-old", "standard", 11, "old")
    saelens_fixture("saelens-topk-old", "topk", 12, "old", hook="blocks.2.hook_mlp_out")
    saelens_fixture("saelens-jumprelu-new", "jumprelu", 13, "new", hook="blocks.1.hook_attn_out")
    saelens_fixture("saelens-topk-new-scaled", "topk", 14, "new", scale=0.25, hook="blocks.0.hook_resid_pre")
    print("wrote", ROOT)
