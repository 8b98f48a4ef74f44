#!/usr/bin/env python3
"""PyTorch side of the real-weights parity check.

Loads a GGUF file with Hugging Face transformers (dequantised to float32, eager attention), tokenizes a set of
prompts with the tokenizer from the same file, and writes for each prompt <out>/prompt<i>.safetensors with the
tokens, the logits, every site activation (relp's layouts, TransformerLens meanings) and the site gradients of a
logit difference, exactly as the committed fixtures (tools/oracles/llama_fixtures.py `capture`). Then run
packages/models-llama/scripts/real-parity.ts on the same file and folder.

  python3 tools/oracles/real_parity.py --gguf /path/SmolLM2-135M-Instruct.Q4_1.gguf --out /tmp/parity-smollm2
  node --conditions=source --import tsx packages/models-llama/scripts/real-parity.ts \
      --gguf /path/SmolLM2-135M-Instruct.Q4_1.gguf --expected /tmp/parity-smollm2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import safetensors.torch
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_fixtures import capture  # noqa: E402

PROMPTS = [
    "When Mary and John went to the store, John gave a drink to",
    "The capital of France is",
    "1, 2, 3, 4, 5, 6,",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "The keys to the cabinet",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", type=int, default=len(PROMPTS))
    args = ap.parse_args()
    folder, name = os.path.split(os.path.abspath(args.gguf))
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    t0 = time.time()
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    print(f"loaded {type(model).__name__} in {time.time() - t0:.1f}s")
    mt = model.config.model_type
    if mt in ("llama", "qwen2", "mistral"):
        from transformers.models.llama import modeling_llama as modeling
        if mt == "qwen2":
            from transformers.models.qwen2 import modeling_qwen2 as modeling
        gemma = False
    elif mt in ("gemma3_text", "gemma3"):
        from transformers.models.gemma3 import modeling_gemma3 as modeling
        gemma = True
    else:
        raise SystemExit(f"unsupported model_type {mt}")
    gen = torch.Generator().manual_seed(7)
    manifest = []
    for i, prompt in enumerate(PROMPTS[: args.prompts]):
        ids = tok(prompt, return_tensors="pt").input_ids
        tensors = capture(model, modeling, ids, gen, gemma=gemma)
        path = os.path.join(args.out, f"prompt{i}.safetensors")
        safetensors.torch.save_file(tensors, path, metadata={"prompt": prompt, "transformers": transformers.__version__})
        manifest.append({"file": f"prompt{i}.safetensors", "prompt": prompt, "tokens": ids[0].tolist()})
        print(f"prompt {i}: {ids.shape[1]} tokens, top-1 next token {tok.decode(tensors['logits'][0, -1].argmax())!r}")
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump({"gguf": os.path.abspath(args.gguf), "model_type": mt, "config": model.config.to_dict(),
                   "prompts": manifest}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
