#!/usr/bin/env python3
"""Reference tensors for checking packages/weights' GGUF loader on the real model files (not a CI test).

For each GGUF file given, loads it with transformers (AutoModelForCausalLM.from_pretrained(folder, gguf_file=...),
dequantised to float32 by gguf-py) and writes its whole state dict (minus a tied lm_head) as float32 safetensors,
plus the config, into OUT_DIR/<stem>.safetensors and OUT_DIR/<stem>.config.json. Then the TypeScript side compares
its own dequantised, renamed and un-permuted tensors against them:

    python3 tools/oracles/gguf_check_real.py ~/.cache/relp/models/smollm2-135m/*.gguf \
        ~/.cache/relp/models/gemma3-270m/*.gguf --out /tmp/relp-gguf-check
    npx tsx --conditions=source tools/oracles/gguf_check_real.ts /tmp/relp-gguf-check \
        ~/.cache/relp/models/smollm2-135m/*.gguf ~/.cache/relp/models/gemma3-270m/*.gguf

Needs torch, transformers, accelerate, gguf, safetensors. Model files are never committed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("/tmp/relp-gguf-check"))
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.files:
        path = path.resolve()
        t0 = time.time()
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        cfg = model.config.to_dict()
        sd = {}
        for name, t in model.state_dict().items():
            if name == "lm_head.weight" and cfg.get("tie_word_embeddings"):
                continue
            sd[name] = t.detach().to(torch.float32).contiguous()
        stem = path.stem
        save_file(sd, str(args.out / f"{stem}.safetensors"))
        (args.out / f"{stem}.config.json").write_text(json.dumps(cfg, indent=2, default=str) + "\n")
        print(f"{path.name}: {len(sd)} tensors, {sum(t.numel() for t in sd.values())} values, {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
