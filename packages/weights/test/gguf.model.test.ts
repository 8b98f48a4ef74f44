import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, isRelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import {
  GgmlType,
  ggufConfig,
  ggufToHfName,
  ggufTokenizerMetadata,
  ggufToWeightMap,
  hfToGgufName,
  parseGguf,
  unpermuteRotaryRows,
} from '../src/gguf/index.js';
import { f32Bytes, writeTestGguf } from './gguf-writer.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../../fixtures/gguf');

interface Summary {
  shape: number[];
  sum: number;
  weightedSum: number;
  absMax: number;
  samples: [number, number][];
}
interface Expected {
  config: Record<string, unknown>;
  tensors: Record<string, Summary>;
}

function checkAgainstTransformers(fixture: string, skipConfigKeys: string[] = []): void {
  const bytes = new Uint8Array(readFileSync(join(fixtures, `${fixture}.gguf`)));
  const expected = JSON.parse(readFileSync(join(fixtures, `${fixture}.expected.json`), 'utf8')) as Expected;
  const config = ggufConfig(bytes);
  for (const [k, v] of Object.entries(expected.config)) {
    if (skipConfigKeys.includes(k)) continue;
    if (k === 'rope_parameters') continue; // checked below
    if (v === null && config[k] === undefined) continue;
    if (typeof v === 'number') expect(config[k] as number, k).toBeCloseTo(v, 12);
    else expect(config[k], k).toEqual(v);
  }
  const rp = expected.config.rope_parameters as Record<string, unknown>;
  if ('rope_theta' in rp) expect(config.rope_theta).toBe(rp.rope_theta);
  else {
    const p = rp as Record<string, { rope_theta: number }>;
    expect(config.rope_local_base_freq).toBe(p.sliding_attention!.rope_theta);
    expect(config.rope_theta).toBe(p.full_attention!.rope_theta);
  }

  const weights = ggufToWeightMap(bytes);
  expect(new Set(weights.names())).toEqual(new Set(Object.keys(expected.tensors)));
  expect(weights.shape!('no.such.weight')).toBeUndefined();
  for (const [name, e] of Object.entries(expected.tensors)) {
    expect(weights.shape!(name), name).toEqual(e.shape);
    const t = weights.get(name)!;
    expect(t.shape, name).toEqual(e.shape);
    for (const [i, x] of e.samples) expect(t.data[i], `${name}[${i}]`).toBe(Math.fround(x));
    let sum = 0;
    let weighted = 0;
    let absMax = 0;
    for (let i = 0; i < t.data.length; i++) {
      sum += t.data[i]!;
      weighted += t.data[i]! * (i % 97);
      absMax = Math.max(absMax, Math.abs(t.data[i]!));
    }
    const tol = (x: number) => 1e-9 * (1 + Math.abs(x)) + 1e-6;
    expect(Math.abs(sum - e.sum), `${name} sum`).toBeLessThan(tol(e.sum) * t.data.length);
    expect(Math.abs(weighted - e.weightedSum), `${name} weighted sum`).toBeLessThan(
      tol(e.weightedSum) * t.data.length,
    );
    expect(absMax, `${name} abs max`).toBe(Math.fround(e.absMax));
  }
}

describe('GGUF → HF names, conventions and config, against transformers', () => {
  it('tiny llama: q/k rotary rows un-permuted, every tensor and the config match', () => {
    checkAgainstTransformers('tiny-llama');
  });

  it('tiny gemma3: norms stored as 1 + w restored, layer types, config match', () => {
    // transformers leaves query_pre_attn_scalar at its default 256; llama.cpp (the GGUF's meaning) uses head_dim.
    // pad_token_id: the file has none; transformers fills in Gemma3TextConfig's default 0.
    checkAgainstTransformers('tiny-gemma3', ['query_pre_attn_scalar', 'pad_token_id']);
    const cfg = ggufConfig(new Uint8Array(readFileSync(join(fixtures, 'tiny-gemma3.gguf'))));
    expect(cfg.query_pre_attn_scalar).toBe(16);
    expect(cfg.sliding_window_pattern).toBe(6);
  });

  it('the un-permutation is the inverse of llama.cpp permute', () => {
    const heads = 2;
    const rows = 8;
    const cols = 3;
    const hf = Float32Array.from({ length: rows * cols }, (_, i) => i);
    // llama.cpp: w.reshape(heads, 2, rows/heads/2, cols).swapaxes(1, 2)
    const half = rows / heads / 2;
    const permuted = new Float32Array(hf.length);
    for (let h = 0; h < heads; h++)
      for (let t = 0; t < 2; t++)
        for (let d = 0; d < half; d++)
          for (let c = 0; c < cols; c++)
            permuted[((h * half + d) * 2 + t) * cols + c] = hf[((h * 2 + t) * half + d) * cols + c]!;
    expect(Array.from(unpermuteRotaryRows(permuted, rows, cols, heads))).toEqual(Array.from(hf));
    expect(() => unpermuteRotaryRows(permuted, rows, cols, 3)).toThrow(/heads/);
  });

  it('name mapping round-trips', () => {
    for (const arch of ['llama', 'gemma3'] as const) {
      for (const g of [
        'token_embd.weight',
        'output_norm.weight',
        'output.weight',
        'blk.3.attn_q.weight',
        'blk.3.attn_k.bias',
        'blk.12.ffn_down.weight',
        'blk.0.ffn_norm.weight',
        'blk.0.attn_q_norm.weight',
      ]) {
        const hf = ggufToHfName(g, arch);
        expect(hf, g).toBeDefined();
        expect(hfToGgufName(hf!, arch)).toBe(g);
      }
    }
    expect(ggufToHfName('blk.0.ffn_norm.weight', 'llama')).toBe(
      'model.layers.0.post_attention_layernorm.weight',
    );
    expect(ggufToHfName('blk.0.ffn_norm.weight', 'gemma3')).toBe(
      'model.layers.0.pre_feedforward_layernorm.weight',
    );
    expect(ggufToHfName('blk.0.post_ffw_norm.weight', 'llama')).toBeUndefined();
    expect(ggufToHfName('rope_freqs.weight', 'llama')).toBeUndefined();
  });

  it('unsupported architectures: UNSUPPORTED for HF names, GGUF names still work', () => {
    const bytes = writeTestGguf({
      metadata: [['general.architecture', { type: 'string', value: 'mamba' }]],
      tensors: [{ name: 'x', dims: [2], type: GgmlType.F32, data: f32Bytes([1, 2]) }],
    });
    for (const f of [() => ggufConfig(bytes), () => ggufToWeightMap(bytes)]) {
      try {
        f();
        expect.unreachable();
      } catch (e) {
        expect(isRelpError(e, ErrorCodes.Unsupported)).toBe(true);
      }
    }
    expect(Array.from(ggufToWeightMap(bytes, { names: 'gguf' }).get('x')!.data)).toEqual([1, 2]);
  });

  it('missing required config keys are BAD_MODEL_FILE', () => {
    const bytes = writeTestGguf({ metadata: [['general.architecture', { type: 'string', value: 'llama' }]] });
    expect(() => ggufConfig(bytes)).toThrow(expect.objectContaining({ code: ErrorCodes.BadModelFile }));
  });
});

describe('ggufTokenizerMetadata', () => {
  it('types the tokenizer keys and checks ids', () => {
    const base: [string, import('./gguf-writer.js').TestValue][] = [
      ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
      [
        'tokenizer.ggml.tokens',
        {
          type: 'array',
          itemType: 'string',
          items: ['a', 'b', 'ab'].map((value) => ({ type: 'string', value })),
        },
      ],
      [
        'tokenizer.ggml.merges',
        { type: 'array', itemType: 'string', items: [{ type: 'string', value: 'a b' }] },
      ],
      [
        'tokenizer.ggml.token_type',
        { type: 'array', itemType: 'i32', items: [1, 1, 3].map((value) => ({ type: 'i32', value })) },
      ],
      ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 2 }],
      ['tokenizer.ggml.add_bos_token', { type: 'bool', value: false }],
      ['tokenizer.chat_template', { type: 'string', value: '{{ x }}' }],
    ];
    const t = ggufTokenizerMetadata(writeTestGguf({ metadata: base }));
    expect(t.model).toBe('gpt2');
    expect(t.tokens).toEqual(['a', 'b', 'ab']);
    expect(t.merges).toEqual(['a b']);
    expect(Array.from(t.tokenTypes!)).toEqual([1, 1, 3]);
    expect(t.bosTokenId).toBe(2);
    expect(t.addBosToken).toBe(false);
    expect(t.chatTemplate).toBe('{{ x }}');
    expect(Object.keys(t.raw)).toContain('tokenizer.ggml.merges');

    const badId = writeTestGguf({
      metadata: [
        ...base.filter(([k]) => k !== 'tokenizer.ggml.bos_token_id'),
        ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 3 }],
      ],
    });
    expect(() => ggufTokenizerMetadata(badId)).toThrow(/not a token id/);
    const badTypes = writeTestGguf({
      metadata: [
        ...base.filter(([k]) => k !== 'tokenizer.ggml.token_type'),
        ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', items: [{ type: 'i32', value: 1 }] }],
      ],
    });
    expect(() => ggufTokenizerMetadata(badTypes)).toThrow(/entries for 3 tokens/);
    expect(() => ggufTokenizerMetadata(writeTestGguf({}))).toThrow(/no tokenizer/);
    expect(parseGguf(writeTestGguf({ metadata: base })).metadata.size).toBe(base.length);
  });
});
