import { RelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import { circuitFromResults } from '../src/components/circuit-graph.js';
import { loadWebModel, modelKey, parseTypedPairs } from '../src/experiment.js';
import { describeError } from '../src/runtime/errors.js';
import { pickedFilesFs } from '../src/runtime/fs.js';

const file = (path: string, text: string) => ({
  name: path.split('/').pop()!,
  webkitRelativePath: path.includes('/') ? path : '',
  size: text.length,
  arrayBuffer: async () => new TextEncoder().encode(text).buffer as ArrayBuffer,
});

describe('typed pairs', () => {
  it('reads "clean | corrupt | answer | wrong" lines, adding the leading space to word answers', () => {
    expect(parseTypedPairs('A gave to | B gave to | John | Mary\n\n')).toEqual([
      { clean: 'A gave to', corrupt: 'B gave to', answer: ' John', wrong: ' Mary' },
    ]);
  });
  it('names the line with the wrong number of fields', () => {
    expect(() => parseTypedPairs('a | b | c')).toThrow(/line 1: expected/);
  });
  it('reads JSONL', () => {
    const r = parseTypedPairs('{"clean":"a","corrupt":"b","answer":" x","wrong":" y"}');
    expect(r).toHaveLength(1);
  });
});

describe('describeError', () => {
  it('keeps typed codes and explains unequal lengths and memory failures', () => {
    expect(describeError(new RelpError('UNSUPPORTED', 'model_type "bert" is not supported')).title).toBe(
      'Unsupported model',
    );
    expect(
      describeError(
        new RelpError(
          'BAD_INPUT',
          'no usable pairs remain: 1 × clean and corrupt tokenise to different lengths',
        ),
      ).code,
    ).toBe('UNEQUAL_LENGTHS');
    expect(describeError(new RangeError('Array buffer allocation failed')).code).toBe('OUT_OF_MEMORY');
    expect(describeError(new Error('WebAssembly.Memory(): could not allocate memory')).code).toBe(
      'OUT_OF_MEMORY',
    );
  });
});

describe('describeError for picked files', () => {
  it('names the GGUF architectures the demo runs, and suggests a truncated file for BAD_MODEL_FILE', () => {
    const gguf = describeError(
      new RelpError('UNSUPPORTED', 'x.gguf: GGUF: architecture "phi3" is not supported'),
    );
    expect(gguf.hint).toMatch(/llama, qwen2 and gemma3 architectures/);
    const folder = describeError(new RelpError('UNSUPPORTED', 'model_type "bert" is not supported'));
    expect(folder.hint).toMatch(/gpt2, gpt_neox, .*gemma3/);
    const bad = describeError(new RelpError('BAD_MODEL_FILE', 'GGUF: not a GGUF file (bad magic)'));
    expect(bad).toMatchObject({ code: 'BAD_MODEL_FILE', title: 'Bad model file' });
    expect(bad.hint).toMatch(/interrupted download/);
  });
});

describe('loadWebModel with picked files', () => {
  it('refuses a single file not named .gguf, naming it', async () => {
    await expect(loadWebModel({ kind: 'files', files: [file('model.bin', 'GGUF')] })).rejects.toMatchObject({
      code: 'BAD_INPUT',
      message: expect.stringMatching(/^model\.bin is neither a GGUF file/),
    });
  });
  it('reads a .gguf file through the loader’s GGUF path; parse errors name the picked file', async () => {
    await expect(
      loadWebModel({ kind: 'files', files: [file('notes.gguf', 'not a model')] }),
    ).rejects.toMatchObject({
      code: 'BAD_MODEL_FILE',
      message: 'notes.gguf: GGUF: not a GGUF file (bad magic)',
    });
  });
  it('a re-picked file that changed is a new model', () => {
    const a = { ...file('m.gguf', 'GGUF'), lastModified: 1 };
    expect(modelKey({ kind: 'files', files: [a] })).not.toBe(
      modelKey({ kind: 'files', files: [{ ...a, lastModified: 2 }] }),
    );
  });
});

describe('pickedFilesFs', () => {
  it('finds the model folder of a folder pick and reads files', async () => {
    const { fs, ref } = pickedFilesFs([file('gpt2/config.json', '{}'), file('gpt2/model.safetensors', 'xx')]);
    expect(ref).toBe('/picked/gpt2');
    expect(await fs.stat('/picked/gpt2')).toEqual({ size: 0, isDirectory: true });
    expect(new TextDecoder().decode(await fs.readFile('/picked/gpt2/config.json'))).toBe('{}');
    await expect(fs.writeFile('/picked/x', new Uint8Array())).rejects.toThrow(/read-only/);
  });
  it('points at the picked folder when it lacks config.json (so the loader’s message names it)', () => {
    expect(pickedFilesFs([file('m/model.safetensors', 'xx'), file('m/tokenizer.json', '{}')]).ref).toBe(
      '/picked/m',
    );
    expect(pickedFilesFs([file('a.json', '{}'), file('b.json', '{}')]).ref).toBe('/picked');
  });
  it('points at a single GGUF file', () => {
    expect(pickedFilesFs([file('model.gguf', 'GGUF')]).ref).toBe('/picked/model.gguf');
  });
});

describe('circuitFromResults', () => {
  it('selects the top cells by |score| with every method’s scores', () => {
    const a = {
      label: 'relp',
      scores: {
        mlp_out: [
          [0, 0.5],
          [0, -2],
        ],
        attn_out: [
          [0, 0.1],
          [0, 1],
        ],
      },
    };
    const b = {
      label: 'atp',
      scores: {
        mlp_out: [
          [0, 0.4],
          [0, -1],
        ],
        attn_out: [
          [0, 0.2],
          [0, 0.3],
        ],
      },
    };
    const g = circuitFromResults([a, b], ['x', 'y'], { method: 'relp', topK: 2 });
    expect(g.nodes.map((n) => n.id)).toEqual(['mlp_out.1.1', 'attn_out.1.1']);
    expect(g.nodes[0]!.scores).toEqual({ relp: -2, atp: -1 });
    expect(g.edges).toEqual([{ from: 'attn_out.1.1', to: 'mlp_out.1.1', kind: 'residual' }]);
  });
});
