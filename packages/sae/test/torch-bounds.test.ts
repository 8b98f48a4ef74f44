import { readFileSync } from 'node:fs';
import { deflateRawSync } from 'node:zlib';
import { ErrorCodes, isRelpError } from '@relp/core';
import { fixturePath, readFixtureJson, useBackend } from '@relp/testing';
import fc from 'fast-check';
import { unzipSync, zipSync } from 'fflate';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDictionaryLearning, readTorchStateDict } from '../src/index.js';

// ---- a tiny torch.save writer: a state dict pickle (protocol 2) and a zip around it

const enc = new TextEncoder();
const op = (...b: number[]) => b;
const glob = (mod: string, name: string) => [0x63, ...enc.encode(`${mod}\n${name}\n`)];
function str(s: string): number[] {
  const b = enc.encode(s);
  return [0x58, b.length & 0xff, (b.length >> 8) & 0xff, 0, 0, ...b];
}
function int(v: number): number[] {
  if (v >= -(2 ** 31) && v < 2 ** 31) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    return [0x4a, ...b];
  }
  const out: number[] = [];
  let x = v;
  for (let i = 0; i < 7; i++) {
    out.push(x % 256);
    x = Math.floor(x / 256);
  }
  return [0x8a, 7, ...out];
}
const tuple = (items: number[][]) => [0x28, ...items.flat(), 0x74];
const MARK = 0x28;

interface FakeTensor {
  readonly storage: string;
  readonly storageNumel: number;
  readonly size: readonly number[];
  readonly stride: readonly number[];
  readonly offset?: number;
}

function statePickle(tensors: Record<string, FakeTensor>): Uint8Array {
  const out: number[] = [0x80, 2, ...glob('collections', 'OrderedDict'), 0x29, 0x52];
  for (const [name, t] of Object.entries(tensors)) {
    out.push(...str(name));
    out.push(...glob('torch._utils', '_rebuild_tensor_v2'), MARK);
    out.push(
      ...tuple([
        str('storage'),
        glob('torch', 'FloatStorage'),
        str(t.storage),
        str('cpu'),
        int(t.storageNumel),
      ]),
      0x51,
    );
    out.push(...int(t.offset ?? 0), ...tuple(t.size.map(int)), ...tuple(t.stride.map(int)), 0x89);
    out.push(...glob('collections', 'OrderedDict'), 0x29, 0x52, 0x74, 0x52, 0x73);
  }
  out.push(...op(0x2e));
  return new Uint8Array(out);
}

/** A torch.save zip of the tensors, each storage float32 filled with 0.5. */
function aePt(tensors: Record<string, FakeTensor>, extra: Record<string, Uint8Array> = {}): Uint8Array {
  const files: Record<string, Uint8Array> = {
    'archive/data.pkl': statePickle(tensors),
    'archive/byteorder': enc.encode('little'),
    ...extra,
  };
  for (const t of Object.values(tensors)) {
    if (t.storageNumel > 1e6) continue;
    files[`archive/data/${t.storage}`] = new Uint8Array(new Float32Array(t.storageNumel).fill(0.5).buffer);
  }
  return zipSync(files, { level: 0 });
}

/**
 * A zip (store and deflate entries, built by hand so an entry's declared size can be far larger than the file):
 * `deflated` entries hold the same raw deflate stream, declared `inflatedSize` bytes each.
 */
function handZip(
  stored: Record<string, Uint8Array>,
  deflated: { names: string[]; stream: Uint8Array; inflatedSize: number },
): Uint8Array {
  const local: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const add = (name: string, data: Uint8Array, method: number, size: number) => {
    const n = enc.encode(name);
    const h = new DataView(new ArrayBuffer(30));
    h.setUint32(0, 0x04034b50, true);
    h.setUint16(4, 20, true);
    h.setUint16(8, method, true);
    h.setUint32(18, data.length, true);
    h.setUint32(22, size, true);
    h.setUint16(26, n.length, true);
    local.push(new Uint8Array(h.buffer), n, data);
    const c = new DataView(new ArrayBuffer(46));
    c.setUint32(0, 0x02014b50, true);
    c.setUint16(4, 20, true);
    c.setUint16(6, 20, true);
    c.setUint16(10, method, true);
    c.setUint32(20, data.length, true);
    c.setUint32(24, size, true);
    c.setUint16(28, n.length, true);
    c.setUint32(42, offset, true);
    central.push(new Uint8Array(c.buffer), n);
    offset += 30 + n.length + data.length;
  };
  for (const [name, data] of Object.entries(stored)) add(name, data, 0, data.length);
  for (const name of deflated.names) add(name, deflated.stream, 8, deflated.inflatedSize);
  const cdSize = central.reduce((a, b) => a + b.length, 0);
  const count = Object.keys(stored).length + deflated.names.length;
  const e = new DataView(new ArrayBuffer(22));
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, count, true);
  e.setUint16(10, count, true);
  e.setUint32(12, cdSize, true);
  e.setUint32(16, offset, true);
  const parts = [...local, ...central, new Uint8Array(e.buffer)];
  const out = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

let zeros: Uint8Array | undefined;
/** 256 MiB of zeros as a raw deflate stream (about 260 KB), declared at full size in the zips below. */
const zeros256MiB = () => {
  zeros ??= deflateRawSync(new Uint8Array(2 ** 28));
  return zeros;
};

/** Runs `f`; returns its error, the time taken and how much resident memory grew (MB). */
function measure(f: () => unknown): { error: unknown; ms: number; grewMb: number } {
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  let error: unknown;
  try {
    f();
  } catch (e) {
    error = e;
  }
  return { error, ms: performance.now() - t0, grewMb: (process.memoryUsage().rss - rss0) / 2 ** 20 };
}

const badFile = (e: unknown) => isRelpError(e, ErrorCodes.BadModelFile);
const config = readFixtureJson<{ trainer: Record<string, unknown> }>('sae', 'dl-relu', 'config.json');
const dims = { dIn: config.trainer.activation_dim as number, dSae: config.trainer.dict_size as number };

/** A dictionary_learning AutoEncoder ae.pt whose encoder.weight is `weight`, the other tensors genuine. */
function autoEncoderWith(weight: FakeTensor): Record<string, FakeTensor> {
  const { dIn, dSae } = dims;
  return {
    'encoder.weight': weight,
    'encoder.bias': { storage: 'b', storageNumel: dSae, size: [dSae], stride: [1] },
    'decoder.weight': { storage: 'd', storageNumel: dIn * dSae, size: [dIn, dSae], stride: [dSae, 1] },
    bias: { storage: 'c', storageNumel: dIn, size: [dIn], stride: [1] },
  };
}

describe('ae.pt files that declare more than they hold', () => {
  beforeAll(() => useBackend('cpu'));

  it('the hand-made writer makes files the reader accepts (so the refusals below are about the bounds)', () => {
    const { dIn, dSae } = dims;
    const ok = aePt(
      autoEncoderWith({ storage: 'w', storageNumel: dIn * dSae, size: [dSae, dIn], stride: [dIn, 1] }),
    );
    const sae = loadDictionaryLearning({ ae: ok, config, source: 'hand-made' });
    expect(sae.dSae).toBe(dSae);
    sae.dispose();
    expect(readTorchStateDict(ok).get('encoder.weight')!.data[7]).toBe(0.5);
  });

  it('a 1 KB file with a zero-stride view of 2^30 elements: BAD_MODEL_FILE in milliseconds, no gigabytes', () => {
    const ae = aePt({ w: { storage: '0', storageNumel: 1, size: [2 ** 15, 2 ** 15], stride: [0, 0] } });
    expect(ae.length).toBeLessThan(2048);
    const r = measure(() => readTorchStateDict(ae, 'zero-stride'));
    expect(r.error).toSatisfy(badFile);
    expect(String(r.error)).toMatch(/zero or overlapping strides/);
    expect(r.ms).toBeLessThan(1000);
    expect(r.grewMb).toBeLessThan(100);
  });

  it('a view of 2^40 elements: BAD_MODEL_FILE, not an internal error', () => {
    const zeroStride = aePt({
      w: { storage: '0', storageNumel: 1, size: [2 ** 20, 2 ** 20], stride: [0, 0] },
    });
    const r = measure(() => readTorchStateDict(zeroStride, 'huge'));
    expect(r.error).toSatisfy(badFile);
    const wholeStorage = aePt({
      w: { storage: '0', storageNumel: 2 ** 40, size: [2 ** 20, 2 ** 20], stride: [2 ** 20, 1] },
    });
    expect(measure(() => readTorchStateDict(wholeStorage, 'huge')).error).toSatisfy(badFile);
    expect(r.grewMb).toBeLessThan(100);
  });

  it('a view reaching past its storage (offset, stride) is refused before it is read', () => {
    for (const t of [
      { storage: '0', storageNumel: 60, size: [10, 6], stride: [6, 1], offset: 1 },
      { storage: '0', storageNumel: 60, size: [10, 6], stride: [7, 1] },
      { storage: '0', storageNumel: 60, size: [10, 6], stride: [2 ** 52, 2 ** 52] },
    ]) {
      expect(measure(() => readTorchStateDict(aePt({ w: t }))).error).toSatisfy(badFile);
    }
  });

  it('an SAE tensor whose shape is not the one config.json implies is refused before its storage is inflated', () => {
    const big = { storage: 'w', storageNumel: 2 ** 26, size: [2 ** 13, 2 ** 13], stride: [2 ** 13, 1] };
    const stream = zeros256MiB();
    const pickle = statePickle(autoEncoderWith(big));
    const zip = handZip(
      {
        'archive/data.pkl': pickle,
        'archive/byteorder': enc.encode('little'),
        'archive/data/b': new Uint8Array(4 * dims.dSae),
        'archive/data/d': new Uint8Array(4 * dims.dIn * dims.dSae),
        'archive/data/c': new Uint8Array(4 * dims.dIn),
      },
      { names: ['archive/data/w'], stream, inflatedSize: 2 ** 28 },
    );
    const r = measure(() => loadDictionaryLearning({ ae: zip, config, source: 'wrong-shape' }));
    expect(r.error).toSatisfy(badFile);
    expect(String(r.error)).toMatch(/encoder\.weight.* has shape \[8192,8192\], expected \[10,6\]/);
    expect(r.grewMb).toBeLessThan(150);
  });

  it('a zip bomb (40 deflated entries of 256 MiB each) inflates only the storages the pickle reads', () => {
    const { dIn, dSae } = dims;
    const stream = zeros256MiB();
    const genuine = aePt(
      autoEncoderWith({ storage: 'w', storageNumel: dIn * dSae, size: [dSae, dIn], stride: [dIn, 1] }),
    );
    const entries = unzipSync(genuine);
    const names = Array.from({ length: 40 }, (_, i) => `archive/data/bomb${i}`);
    const bomb = handZip(entries, { names, stream, inflatedSize: 2 ** 28 });
    expect(bomb.length).toBeLessThan(20 * 2 ** 20);
    const r = measure(() => {
      const sae = loadDictionaryLearning({ ae: bomb, config, source: 'bomb' });
      sae.dispose();
    });
    expect(r.error).toBeUndefined();
    expect(r.grewMb).toBeLessThan(150);
    expect(r.ms).toBeLessThan(5000);

    // The same entries referenced by the pickle (as 40 storages of 2^26 floats): refused by the byte budget
    // before the ninth is inflated, whoever reads it.
    const tensors: Record<string, FakeTensor> = {};
    for (let i = 0; i < 40; i++)
      tensors[`t${i}`] = {
        storage: `bomb${i}`,
        storageNumel: 2 ** 26,
        size: [2 ** 26],
        stride: [1],
      };
    const referenced = handZip(
      { 'archive/data.pkl': statePickle(tensors), 'archive/byteorder': enc.encode('little') },
      { names, stream, inflatedSize: 2 ** 28 },
    );
    const r2 = measure(() => readTorchStateDict(referenced, 'referenced bomb'));
    expect(r2.error).toSatisfy(badFile);
    expect(String(r2.error)).toMatch(/needs more than \d+ bytes/);
    expect(r2.grewMb).toBeLessThan(150);
    const r3 = measure(() => readTorchStateDict(referenced, 'referenced bomb', { maxBytes: 2 ** 20 }));
    expect(r3.error).toSatisfy(badFile);
  });

  it('a storage whose declared size differs from what the pickle says it holds is refused uninflated', () => {
    const stream = deflateRawSync(new Uint8Array(2 ** 20));
    const zip = handZip(
      {
        'archive/data.pkl': statePickle({
          w: { storage: 's', storageNumel: 60, size: [10, 6], stride: [6, 1] },
        }),
        'archive/byteorder': enc.encode('little'),
      },
      { names: ['archive/data/s'], stream, inflatedSize: 2 ** 30 },
    );
    const r = measure(() => readTorchStateDict(zip, 'lying storage'));
    expect(r.error).toSatisfy(badFile);
    expect(String(r.error)).toMatch(/has 1073741824 bytes, expected 240/);
    expect(r.grewMb).toBeLessThan(100);
  });

  it('mutated integers in the pickle (sizes, strides, offsets, storage sizes) give BAD_MODEL_FILE or tensors, cheaply', () => {
    const ae = new Uint8Array(readFixtureBytes());
    const pkl = findPickle(ae);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(pkl.length - 1), fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x40, 0x10)), {
          minLength: 1,
          maxLength: 6,
        }),
        (edits) => {
          const m = ae.slice();
          for (const [i, v] of edits) m[pkl.start + i] = v;
          const r = measure(() =>
            loadDictionaryLearning({
              ae: m,
              config: readFixtureJson('sae', 'dl-relu', 'config.json'),
            }).dispose(),
          );
          if (r.error !== undefined) expect(isRelpError(r.error)).toBe(true);
          expect(r.grewMb).toBeLessThan(200);
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });
});

function readFixtureBytes(): Uint8Array {
  return new Uint8Array(readFileSync(fixturePath('sae', 'dl-relu', 'ae.pt')));
}

/** Where data.pkl's bytes lie in a torch zip (its first entry, stored). */
function findPickle(zip: Uint8Array): { start: number; length: number } {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const name = new TextDecoder().decode(zip.subarray(30, 30 + view.getUint16(26, true)));
  if (view.getUint32(0, true) !== 0x04034b50 || !name.endsWith('data.pkl'))
    throw new Error('data.pkl is not first');
  const length = unzipSync(zip)[name]!.length;
  return { start: 30 + view.getUint16(26, true) + view.getUint16(28, true), length };
}
