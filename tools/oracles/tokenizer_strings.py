"""The strings every tokenizer oracle encodes (shared by tokenizer_*.py).

A few hundred varied strings: ASCII prose, IOI-style prompts, contractions, numbers, code, whitespace
runs and newlines, accented Latin, Greek/Cyrillic, CJK, emoji (astral plane, ZWJ sequences), combining
marks (NFC-sensitive), control characters and special-token text. Deterministic: no randomness beyond
a seeded generator.
"""

import random

NAMES = ["Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Anna", "Paul", "Lisa"]
PLACES = ["store", "park", "school", "office", "beach", "hospital", "restaurant", "station"]
OBJECTS = ["drink", "book", "ring", "computer", "snack", "letter", "necklace", "basketball"]

HAND = [
    "",
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n",
    "\t",
    " \n ",
    "a",
    " a",
    "Hello world",
    "Hello, world!",
    " Hello world",
    "Hello  world",
    "Hello   world  ",
    "hello\nworld",
    "hello\r\nworld",
    "tab\tseparated\tvalues",
    "trailing spaces   ",
    "   leading spaces",
    " Mary",
    " John",
    "Mary",
    " mary",
    " MARY",
    "When Mary and John went to the store, John gave a drink to",
    "When Mary and John went to the store, Mary gave a drink to",
    "The Eiffel Tower is located in the city of",
    "The capital of France is",
    "I'm sure you're right, they'll see we've done it; she'd say it's John's.",
    "I'M SURE YOU'RE RIGHT",
    "don't won't can't shouldn't y'all ma'am o'clock",
    "rock 'n' roll",
    "'s 're 've 'm 'll 'd",
    "12345",
    "3.14159",
    "1,000,000",
    "2024-05-17T12:34:56Z",
    "0x1F600",
    "-42 +17 = -25",
    "The year was 1999 and then 2000.",
    "phone: +1 (555) 123-4567",
    "def f(x):\n    return x * 2\n",
    "for (let i = 0; i < n; i++) {\n  sum += a[i];\n}",
    "if x == y and not z: pass",
    "    indented by four",
    "\t\tindented by tabs",
    "<html><body class=\"main\">Hi</body></html>",
    "SELECT * FROM users WHERE id = 42;",
    "https://example.com/path?query=1&b=2#frag",
    "user@example.com",
    "C:\\Users\\name\\file.txt",
    "$PATH ~/bin && echo $?",
    "...!!!???",
    "--- *** ___ ===",
    "“Smart quotes” and ‘single’ — em dash – en dash …",
    "naïve café résumé façade coöperate",
    "Crème brûlée à la mode",
    "Straße München Zürich",
    "Ελληνικά: Καλημέρα κόσμε",
    "Русский текст: Привет, мир!",
    "עברית שלום",
    "العربية مرحبا بالعالم",
    "हिन्दी नमस्ते",
    "日本語のテキストです。",
    "中文文本：你好，世界！",
    "한국어 텍스트 안녕하세요",
    "ไทย สวัสดี",
    "emoji 😀😃😄",
    "👍 thumbs up",
    "family 👨‍👩‍👧‍👦 zwj",
    "flags 🇫🇷🇩🇪",
    "skin tone 👋🏽",
    "math ∑∫√∞ ≠ ≤ ≥",
    "arrows → ← ↑ ↓ ⇒",
    "currency € £ ¥ ₹ ₿",
    "e\u0301 vs \u00e9",
    "A\u030a vs \u00c5 vs \u212b",
    "n\u0303o\u0308",
    "ﬁ ligature ﬀ",
    "full-width ＡＢＣ１２３",
    "zero\u200bwidth\u200bspace",
    "non\u00a0breaking\u00a0space",
    "bell\u0007char",
    "null\u0000byte",
    "soft\u00adhyphen",
    "<|endoftext|>",
    "text<|endoftext|>more text",
    "Hello<|endoftext|>",
    " <|endoftext|> ",
    "<|im_start|>user\nHi<|im_end|>",
    "<bos>hello<eos>",
    "<unk>",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "abcabcabcabcabcabcabcabc",
    "                                ",
    "x                y",
    "\n\n\n\nfour newlines",
    " \t \n \r\n mixed whitespace",
    "Supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "TheQuickBrownFoxJumpsOverTheLazyDog",
    "snake_case_identifier camelCaseIdentifier PascalCase kebab-case",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX",
    "A man, a plan, a canal: Panama",
]


def generated(seed: int = 0, n_ioi: int = 60, n_mix: int = 80) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n_ioi):
        a, b = rng.sample(NAMES, 2)
        place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
        s = rng.choice([a, b])
        templates = [
            f"When {a} and {b} went to the {place}, {s} gave a {obj} to",
            f"Then, {a} and {b} had a long argument. Afterwards {s} said to",
            f"After {a} and {b} went to the {place}, {s} gave a {obj} to",
            f"While {a} and {b} were working at the {place}, {s} handed a {obj} to",
        ]
        out.append(rng.choice(templates))
    pieces = [
        "the", " of", "and", "123", "4567", " ", "  ", "\n", "\t", "é", "ü", "中", "文", "😀", "!", "?", ",",
        "'s", "n't", "Mary", " John", "x", "_", "(", ")", "{", "}", "=", "==", "->", "€", "\u0301", "ß",
        "Hello", "world", "0", "9", ".", "...", "—", "ﬁ", "\u00a0", "$", "#", "@", "0.5", "1e-3",
    ]
    for _ in range(n_mix):
        k = rng.randint(1, 12)
        out.append("".join(rng.choice(pieces) for _ in range(k)))
    return out


def all_strings() -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for s in HAND + generated():
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


if __name__ == "__main__":
    print(len(all_strings()))
