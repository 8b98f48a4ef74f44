/**
 * Pairs for the batched commands (`relp attribute`, `relp compare`), read as a stream: a --data file of any length
 * is read twice, line by line and never whole (once to count and hash it, once to score it, one batch in memory at
 * a time), through core's regular-file reader; a --task is generated in memory as before.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { badInput, ErrorCodes, isRelpError, RelpError } from '@relp/core/errors';
import { regularFileChunks } from '@relp/core/node-files';
import { buildTask, type PairRecord, readPairsJsonl } from '@relp/tasks';
import type { DataOptions } from './data.js';

export interface PairSource {
  /** For provenance: where the pairs come from (file path or task and its parameters), their count and hash. */
  readonly description: Readonly<Record<string, unknown>>;
  /** What makes two runs' data the same: the content hash and count (not the path, which may differ per node). */
  readonly identity: Readonly<Record<string, unknown>>;
  /** Pairs (non-blank lines) in the data set. */
  readonly records: number;
  /** Whether any pair is text (to be tokenised). */
  readonly hasText: boolean;
  /** What messages call the data set. */
  readonly what: string;
  /** The pairs from the first, in order. A file that changed since it was opened is BAD_INPUT. */
  read(): AsyncIterable<PairRecord>;
}

/** Pairs in a batch, their index, and the data-set index of the first. */
export interface RecordBatch {
  readonly index: number;
  readonly first: number;
  readonly records: readonly PairRecord[];
}

/** Consecutive batches of `size` pairs (the last may be shorter). */
export async function* batchesOf(
  records: AsyncIterable<PairRecord>,
  size: number,
): AsyncGenerator<RecordBatch, void, undefined> {
  let batch: PairRecord[] = [];
  let index = 0;
  for await (const r of records) {
    batch.push(r);
    if (batch.length === size) {
      yield { index, first: index * size, records: batch };
      index++;
      batch = [];
    }
  }
  if (batch.length > 0) yield { index, first: index * size, records: batch };
}

/** The bytes of a file as they are read, hashed on the way. */
async function* hashed(
  chunks: AsyncIterable<Uint8Array>,
  hash: ReturnType<typeof createHash>,
): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const c of chunks) {
    hash.update(c);
    yield c;
  }
}

function cannotRead(e: unknown, name: string): unknown {
  if (isRelpError(e)) return e; // not a regular file, not UTF-8, a bad line
  return new RelpError(ErrorCodes.BadInput, `cannot read --data ${name}: ${(e as Error).message}`, {
    cause: e,
  });
}

async function fileSource(name: string, cwd: string): Promise<PairSource> {
  const path = resolve(cwd, name);
  const hash = createHash('sha256');
  let records = 0;
  let hasText = false;
  try {
    for await (const r of readPairsJsonl(
      hashed(regularFileChunks(path, { what: '--data' }), hash),
      name,
      Number.POSITIVE_INFINITY,
    )) {
      records++;
      if (r.kind === 'text') hasText = true;
    }
  } catch (e) {
    throw cannotRead(e, name);
  }
  if (records === 0) throw badInput(`${name}: no pairs (the file is empty or blank)`, { source: name });
  const sha256 = `sha256:${hash.digest('hex')}`;
  return {
    description: { kind: 'file', path: name, lines: records, sha256 },
    identity: { kind: 'file', sha256, pairs: records },
    records,
    hasText,
    what: name,
    async *read() {
      const again = createHash('sha256');
      try {
        yield* readPairsJsonl(
          hashed(regularFileChunks(path, { what: '--data' }), again),
          name,
          Number.POSITIVE_INFINITY,
        );
      } catch (e) {
        throw cannotRead(e, name);
      }
      if (`sha256:${again.digest('hex')}` !== sha256) {
        throw badInput(`--data ${name} changed while relp read it: run again on a file that stays as it is`, {
          path: name,
        });
      }
    },
  };
}

function taskSource(o: DataOptions): PairSource {
  const pairs = buildTask(o.task!, {
    ...(o.n === undefined ? {} : { n: o.n }),
    ...(o.seed === undefined ? {} : { seed: o.seed }),
    ...(o.corruption === undefined ? {} : { corruption: o.corruption }),
    ...(o.order === undefined ? {} : { order: o.order }),
  });
  const records: PairRecord[] = pairs.map((pair, i) => ({ kind: 'text', line: i + 1, pair }));
  const params = {
    task: o.task,
    n: pairs.length,
    seed: o.seed ?? 0,
    ...(o.corruption === undefined ? {} : { corruption: o.corruption }),
    ...(o.order === undefined ? {} : { order: o.order }),
  };
  const sha256 = `sha256:${createHash('sha256').update(JSON.stringify(pairs)).digest('hex')}`;
  return {
    description: { kind: 'task', ...params },
    identity: { kind: 'task', ...params, sha256, pairs: records.length },
    records: records.length,
    hasText: true,
    what: `task ${o.task}`,
    async *read() {
      yield* records;
    },
  };
}

/** --data (streamed) or --task (generated). */
export async function openPairSource(o: DataOptions, cwd: string): Promise<PairSource> {
  if (o.data !== undefined && o.task !== undefined) throw badInput('give either --data or --task, not both');
  if (o.data === undefined && o.task === undefined) {
    throw badInput('no data: pass --data <pairs.jsonl> or --task <name> (see `relp tasks`)');
  }
  return o.data !== undefined ? fileSource(o.data, cwd) : taskSource(o);
}
