import { createHash } from 'node:crypto';
import type { LanguageModel, ModelFamily, WeightMap } from '@relp/core';
import { writeSafetensors } from '@relp/weights';
import type { FetchLike, ResponseLike } from '../src/index.js';

export const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
export const utf8 = (s: string) => new TextEncoder().encode(s);

export interface ToyModel extends LanguageModel {
  readonly config: Readonly<Record<string, unknown>>;
  readonly weights: WeightMap;
  disposed: boolean;
}

/** A fake family: model_type "toy", needs config.n_embd and a weight "wte" of shape [vocab, n_embd]. */
export const toyFamily: ModelFamily = {
  name: 'toy',
  modelTypes: ['toy', 'toy2'],
  fromHfConfig(config, weights) {
    const d = config.n_embd;
    if (typeof d !== 'number') throw new Error('config.n_embd missing');
    const wte = weights.get('wte');
    if (wte === undefined) throw new Error('weight wte missing');
    const model: ToyModel = {
      architecture: 'toy',
      dims: {
        nLayers: 1,
        dModel: d,
        nHeads: 1,
        nKvHeads: 1,
        dHead: d,
        dMlp: d,
        vocabSize: wte.shape[0]!,
        contextLength: 8,
      },
      sites: [],
      nonlinearities: [],
      embed: () => {
        throw new Error('toy');
      },
      forward: () => {
        throw new Error('toy');
      },
      dispose() {
        model.disposed = true;
      },
      config,
      weights,
      disposed: false,
    };
    return model;
  },
};

export function toyWeights(vocab = 5, d = 3): Uint8Array {
  return writeSafetensors({
    wte: { shape: [vocab, d], data: Float32Array.from({ length: vocab * d }, (_, i) => i / 7) },
    'ln.weight': { shape: [d], data: new Float32Array(d).fill(1), dtype: 'F16' },
  });
}

export const toyConfig = (extra: Record<string, unknown> = {}) =>
  utf8(JSON.stringify({ model_type: 'toy', n_embd: 3, ...extra }));
export const toyTokenizer = utf8(JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 } } }));

export interface HubFile {
  bytes: Uint8Array;
  /** Send x-linked-etag with the sha256 (default true). */
  etag?: string | false;
  status?: number;
  /** Close the stream with an error after this many bytes, the first `failTimes` times. */
  failAfter?: number;
  failTimes?: number;
  /** Ignore Range requests (answer 200 with everything). */
  noRange?: boolean;
  /** Claim this content-length instead of the real one. */
  lieLength?: number;
}

export interface FakeHub {
  fetch: FetchLike;
  requests: { url: string; headers: Record<string, string> }[];
  files: Map<string, HubFile>;
}

function response(
  status: number,
  headers: Record<string, string>,
  body: Uint8Array,
  failAfter?: number,
): ResponseLike {
  const h = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const chunk = 7;
  const limit = Math.min(failAfter ?? body.length, body.length);
  let at = 0;
  // pull-based, so chunks before a failure are delivered before the error (error() drops queued chunks)
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at < limit) {
        const end = Math.min(at + chunk, limit);
        controller.enqueue(body.slice(at, end));
        at = end;
      } else if (failAfter !== undefined && failAfter < body.length)
        controller.error(new Error('connection reset'));
      else controller.close();
    },
  });
  return {
    ok: status >= 200 && status < 300,
    status,
    statusText: String(status),
    headers: { get: (n) => h.get(n.toLowerCase()) ?? null },
    body: stream,
    arrayBuffer: async () => body.slice().buffer,
  };
}

/** A fake Hugging Face hub serving `https://huggingface.co/<id>/resolve/<rev>/<file>` from memory. */
export function fakeHub(repo: string, files: Record<string, HubFile>, revision = 'main'): FakeHub {
  const map = new Map(Object.entries(files));
  const requests: FakeHub['requests'] = [];
  const prefix = `https://huggingface.co/${repo}/resolve/${revision}/`;
  const fetch: FetchLike = async (url, init) => {
    const headers = { ...(init?.headers ?? {}) };
    requests.push({ url, headers });
    const name = url.startsWith(prefix) ? decodeURIComponent(url.slice(prefix.length)) : undefined;
    const f = name === undefined ? undefined : map.get(name);
    if (f === undefined) return response(404, {}, utf8('Entry not found'));
    if (f.status !== undefined) return response(f.status, {}, utf8('no'));
    const etag = f.etag === undefined ? `"${sha256(f.bytes)}"` : f.etag;
    const base: Record<string, string> = etag === false ? {} : { 'x-linked-etag': etag, etag };
    let failAfter: number | undefined;
    if (f.failAfter !== undefined && (f.failTimes ?? 1) > 0) {
      f.failTimes = (f.failTimes ?? 1) - 1;
      failAfter = f.failAfter;
    }
    const range = /^bytes=(\d+)-$/.exec(headers.range ?? '');
    if (range && !f.noRange && (headers['if-range'] === undefined || headers['if-range'] === etag)) {
      const start = Number(range[1]);
      if (start >= f.bytes.length) return response(416, {}, new Uint8Array(0));
      const body = f.bytes.subarray(start);
      return response(
        206,
        {
          ...base,
          'content-length': String(body.length),
          'content-range': `bytes ${start}-${f.bytes.length - 1}/${f.bytes.length}`,
        },
        body,
        failAfter,
      );
    }
    return response(
      200,
      { ...base, 'content-length': String(f.lieLength ?? f.bytes.length) },
      f.bytes,
      failAfter,
    );
  };
  return { fetch, requests, files: map };
}

export const offlineFetch: FetchLike = async () => {
  throw new TypeError('fetch failed');
};
