"""GPT-NeoX / Pythia-style tokenizer oracle.

No GPT-NeoX tokenizer.json is available offline, so this builds a small one with the same pipeline as
EleutherAI's gpt-neox-20b tokenizer.json (which Pythia uses):

  normalizer      NFC
  pre_tokenizer   ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=true)
  post_processor  ByteLevel(add_prefix_space=false, trim_offsets=true)
  decoder         ByteLevel(add_prefix_space=false, trim_offsets=true)
  model           BPE (byte-level alphabet, no unk), trained here to ~3000 tokens
  added tokens    <|endoftext|> = 0 and <|padding|> = 1 (special), and runs of 2..24 spaces as
                  non-special, normalized added tokens at the end of the vocabulary, as in gpt-neox-20b

and writes

  fixtures/tokenizer/neox-small.tokenizer.json   the tokenizer (committed; small)
  fixtures/tokenizer/neox-small.oracle.json      strings → ids / offsets / decoded text

    python tools/oracles/tokenizer_neox.py
"""

import json
import sysconfig
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import BPE

from tokenizer_common import FIXTURES, encode_cases, write_json
from tokenizer_strings import all_strings

VOCAB_SIZE = 3000


def training_corpus() -> list[str]:
    """Deterministic text: a fixed set of Python standard-library modules (prose in docstrings and code)
    plus the oracle strings themselves (so CJK, emoji and accents get some merges)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for name in ["textwrap.py", "string.py", "difflib.py", "argparse.py", "json/__init__.py", "csv.py"]:
        p = stdlib / name
        texts.append(p.read_text(encoding="utf-8"))
    texts.extend(all_strings() * 3)
    return texts


def build_neox() -> Tokenizer:
    tok = Tokenizer(BPE(fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=[
            AddedToken("<|endoftext|>", normalized=False, special=True),
            AddedToken("<|padding|>", normalized=False, special=True),
        ],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.token_to_id("<|padding|>") == 1
    # gpt-neox-20b ends its vocabulary with runs of 24 down to 2 spaces, as plain (non-special) added tokens.
    tok.add_tokens([AddedToken(" " * n, normalized=True, special=False) for n in range(24, 1, -1)])
    return tok


def main() -> None:
    tok = build_neox()
    path = FIXTURES / "neox-small.tokenizer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Round-trip through the file, so the oracle is what the committed file gives.
    raw = tok.to_str()
    path.write_text(json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    tok = Tokenizer.from_file(str(path))
    write_json(
        FIXTURES / "neox-small.oracle.json",
        {
            "source": "tools/oracles/tokenizer_neox.py (tokenizers " + __import__("tokenizers").__version__ + ")",
            "tokenizer": "neox-small.tokenizer.json",
            "vocabSize": tok.get_vocab_size(),
            "cases": encode_cases(tok, all_strings()),
        },
    )


if __name__ == "__main__":
    main()
