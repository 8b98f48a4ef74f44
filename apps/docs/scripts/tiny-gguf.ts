/**
 * The demo's GGUF test model: a tiny random Llama (2 layers, d 32, 4 query heads sharing 2 key/value heads,
 * tied embeddings) in a GGUF file whose metadata carries the whole tokenizer (a byte-level BPE in the
 * `tokenizer.ggml.*` keys, as SmolLM2's files do): 256 byte tokens, two control tokens and the merges that spell
 * the words of WORDS, about 330 tokens in all. Built at test time, never committed.
 *
 * The GGUF writer below is the minimum the file needs (little-endian GGUF v3, F32 tensors, scalar, string and
 * array metadata); @relp/weights reads it like any llama.cpp file (q/k rows are random, so llama.cpp's rotary
 * row permutation, which the reader undoes, needs no counterpart here).
 */
import { seededNormal } from '@relp/core';
import { BYTE_TO_CHAR, toByteLevel, tokenizerFromGgufMetadata } from '@relp/tokenizer';
import { ggufTokenizerMetadata, parseGguf } from '@relp/weights';

/** Words (with GPT-2's leading space where they follow another word) that are one token each. */
export const TINY_GGUF_WORDS: readonly string[] = [
  'When',
  ...[
    'John',
    'Mary',
    'Tom',
    'Anna',
    'and',
    'went',
    'to',
    'the',
    'store',
    'park',
    'gave',
    'a',
    'bag',
    'ball',
    'book',
    'school',
  ].map((w) => ` ${w}`),
];

export const TINY_GGUF_SEED = 20251125;

type Meta =
  | { type: 'u32' | 'i32' | 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'strings'; value: readonly string[] }
  | { type: 'i32s'; value: readonly number[] };

/** GGUF value type ids (gguf.h). */
const T = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;
const GGML_F32 = 0;
const ALIGN = 32;

class Writer {
  private readonly parts: Uint8Array[] = [];
  length = 0;
  private put(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.length;
  }
  private view(n: number, f: (v: DataView) => void): void {
    const b = new Uint8Array(n);
    f(new DataView(b.buffer));
    this.put(b);
  }
  u32 = (x: number) => this.view(4, (v) => v.setUint32(0, x, true));
  i32 = (x: number) => this.view(4, (v) => v.setInt32(0, x, true));
  f32 = (x: number) => this.view(4, (v) => v.setFloat32(0, x, true));
  u64 = (x: number) => this.view(8, (v) => v.setBigUint64(0, BigInt(x), true));
  bytes = (b: Uint8Array) => this.put(b);
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.put(b);
  }
  meta(m: Meta): void {
    switch (m.type) {
      case 'u32':
        this.u32(T.u32);
        this.u32(m.value);
        break;
      case 'i32':
        this.u32(T.i32);
        this.i32(m.value);
        break;
      case 'f32':
        this.u32(T.f32);
        this.f32(m.value);
        break;
      case 'bool':
        this.u32(T.bool);
        this.put(new Uint8Array([m.value ? 1 : 0]));
        break;
      case 'string':
        this.u32(T.string);
        this.str(m.value);
        break;
      case 'strings':
        this.u32(T.array);
        this.u32(T.string);
        this.u64(m.value.length);
        for (const s of m.value) this.str(s);
        break;
      case 'i32s':
        this.u32(T.array);
        this.u32(T.i32);
        this.u64(m.value.length);
        for (const x of m.value) this.i32(x);
        break;
    }
  }
  pad(): void {
    const n = (ALIGN - (this.length % ALIGN)) % ALIGN;
    if (n > 0) this.put(new Uint8Array(n));
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

/** A GGUF v3 file: metadata in order, then F32 tensors given with their row-major (HF) shape. */
export function writeGguf(
  metadata: readonly (readonly [string, Meta])[],
  tensors: readonly { name: string; shape: readonly number[]; data: Float32Array }[],
): Uint8Array {
  const w = new Writer();
  w.bytes(new TextEncoder().encode('GGUF'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, m] of metadata) {
    w.str(key);
    w.meta(m);
  }
  let offset = 0;
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.shape.length);
    // ggml lists dimensions fastest-varying first: the reverse of the row-major shape.
    for (const d of [...t.shape].reverse()) w.u64(d);
    w.u32(GGML_F32);
    w.u64(offset);
    offset += Math.ceil((t.data.length * 4) / ALIGN) * ALIGN;
  }
  w.pad();
  for (const t of tensors) {
    w.bytes(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    w.pad();
  }
  return w.finish();
}

/** The byte-level BPE: control tokens, the 256 byte tokens, then one merge per prefix of each word. */
function tinyVocabulary(words: readonly string[]): { tokens: string[]; types: number[]; merges: string[] } {
  const tokens = ['<|endoftext|>', '<|im_start|>', ...BYTE_TO_CHAR];
  const types = [3, 3, ...BYTE_TO_CHAR.map(() => 1)];
  const merges: string[] = [];
  const known = new Set(tokens);
  for (const word of words) {
    const chars = Array.from(toByteLevel(word));
    let prefix = chars[0]!;
    for (const c of chars.slice(1)) {
      const next = prefix + c;
      if (!known.has(next)) {
        merges.push(`${prefix} ${c}`);
        tokens.push(next);
        types.push(1);
        known.add(next);
      }
      prefix = next;
    }
  }
  return { tokens, types, merges };
}

export interface TinyGgufOptions {
  /** general.architecture (default llama); anything else makes a file the demo must refuse clearly. */
  readonly architecture?: string;
}

/** The tiny Llama GGUF file, as bytes (deterministic: the same bytes on every run). */
export function tinyLlamaGguf(options: TinyGgufOptions = {}): Uint8Array {
  const arch = options.architecture ?? 'llama';
  const d = 32;
  const layers = 2;
  const heads = 4;
  const kvHeads = 2;
  const dHead = d / heads;
  const ff = 64;
  const { tokens, types, merges } = tinyVocabulary(TINY_GGUF_WORDS);
  const vocab = tokens.length;
  const metadata: [string, Meta][] = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.name', { type: 'string', value: 'relp tiny random llama' }],
    ['general.file_type', { type: 'u32', value: 0 }],
    [`${arch}.context_length`, { type: 'u32', value: 64 }],
    [`${arch}.embedding_length`, { type: 'u32', value: d }],
    [`${arch}.block_count`, { type: 'u32', value: layers }],
    [`${arch}.feed_forward_length`, { type: 'u32', value: ff }],
    [`${arch}.attention.head_count`, { type: 'u32', value: heads }],
    [`${arch}.attention.head_count_kv`, { type: 'u32', value: kvHeads }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-5 }],
    [`${arch}.rope.freq_base`, { type: 'f32', value: 10000 }],
    [`${arch}.rope.dimension_count`, { type: 'u32', value: dHead }],
    [`${arch}.vocab_size`, { type: 'u32', value: vocab }],
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'smollm' }],
    ['tokenizer.ggml.tokens', { type: 'strings', value: tokens }],
    ['tokenizer.ggml.token_type', { type: 'i32s', value: types }],
    ['tokenizer.ggml.merges', { type: 'strings', value: merges }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 1 }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: 0 }],
    ['tokenizer.ggml.padding_token_id', { type: 'u32', value: 0 }],
  ];
  const normal = seededNormal(TINY_GGUF_SEED);
  // Larger than HF's init (std 0.02) so that the attribution maps are not all near zero.
  const random = (n: number, std: number, mean = 0) =>
    Float32Array.from({ length: n }, () => mean + std * normal());
  const tensors: { name: string; shape: number[]; data: Float32Array }[] = [
    { name: 'token_embd.weight', shape: [vocab, d], data: random(vocab * d, 0.5) },
  ];
  for (let l = 0; l < layers; l++) {
    const b = `blk.${l}`;
    tensors.push(
      { name: `${b}.attn_norm.weight`, shape: [d], data: random(d, 0.1, 1) },
      { name: `${b}.attn_q.weight`, shape: [heads * dHead, d], data: random(heads * dHead * d, 0.3) },
      { name: `${b}.attn_k.weight`, shape: [kvHeads * dHead, d], data: random(kvHeads * dHead * d, 0.3) },
      { name: `${b}.attn_v.weight`, shape: [kvHeads * dHead, d], data: random(kvHeads * dHead * d, 0.3) },
      { name: `${b}.attn_output.weight`, shape: [d, heads * dHead], data: random(d * heads * dHead, 0.2) },
      { name: `${b}.ffn_norm.weight`, shape: [d], data: random(d, 0.1, 1) },
      { name: `${b}.ffn_gate.weight`, shape: [ff, d], data: random(ff * d, 0.3) },
      { name: `${b}.ffn_up.weight`, shape: [ff, d], data: random(ff * d, 0.3) },
      { name: `${b}.ffn_down.weight`, shape: [d, ff], data: random(d * ff, 0.2) },
    );
  }
  tensors.push({ name: 'output_norm.weight', shape: [d], data: random(d, 0.1, 1) });
  const bytes = writeGguf(metadata, tensors);
  checkVocabulary(bytes);
  return bytes;
}

/** Each word of TINY_GGUF_WORDS must be one token (read back from the file), or the typed pairs would not line up. */
function checkVocabulary(bytes: Uint8Array): void {
  const tok = tokenizerFromGgufMetadata(
    ggufTokenizerMetadata(parseGguf(bytes)).raw as Record<string, unknown>,
  );
  for (const w of TINY_GGUF_WORDS) {
    const ids = tok.encode(w);
    if (ids.length !== 1) throw new Error(`tiny GGUF vocabulary: "${w}" is ${ids.length} tokens`);
  }
}

/**
 * A corrupt copy: the valid file cut in the middle of its tensor data (what an interrupted download leaves), so
 * the header parses and the tensor table points past the end.
 */
export function truncatedGguf(bytes: Uint8Array): Uint8Array {
  return bytes.slice(0, bytes.length - 4096);
}
