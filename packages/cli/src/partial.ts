/**
 * Partial results: what a shard (`--shard i/n`) writes, and what a batched run checkpoints after every batch
 * (`<out>.partial.json`). One layout for both: the run's identity (model, methods, settings, data, batch size),
 * its shard and the batches done, each method's exact totals (totals.ts), the dropped pairs, the token labels and
 * the provenance. `relp merge` combines complete partials; a run resumes from its checkpoint.
 */
import { badInput } from '@relp/core/errors';
import { readRegularText } from '@relp/core/node-files';
import type { DroppedPair } from '@relp/tasks';
import type { Shard } from './shard.js';
import type { MethodTotals } from './totals.js';

export const PARTIAL_FORMAT = 'relp-partial';
export const PARTIAL_VERSION = 1;

/** The largest partial read: a partial holds a few score grids of exact sums. */
const MAX_PARTIAL_BYTES = 2 ** 31;

/** Everything two runs must share for their batches to add up: compared key by key. */
export interface RunIdentity {
  readonly command: string;
  readonly model: Readonly<Record<string, unknown>>;
  readonly methods: readonly string[];
  readonly sites: string;
  readonly direction: string;
  readonly normalize: boolean;
  readonly settings: Readonly<Record<string, unknown>>;
  readonly batchSize: number;
  readonly bos: boolean;
  readonly data: Readonly<Record<string, unknown>>;
}

/** Why partials cannot be combined, in `details.reason` of the BAD_INPUT error. */
export type PartialMismatch =
  | 'not-a-partial'
  | 'different-model'
  | 'different-methods'
  | 'different-settings'
  | 'different-data'
  | 'different-shard-count'
  | 'overlapping-shards'
  | 'missing-shards'
  | 'incomplete-shard';

export interface Partial {
  readonly format: typeof PARTIAL_FORMAT;
  readonly version: typeof PARTIAL_VERSION;
  readonly identity: RunIdentity;
  readonly shard: Shard;
  /** The shard's batches [first, end), and the next batch to score (end when complete). */
  readonly batches: { readonly first: number; readonly end: number; next: number };
  /** Per method, in identity.methods' order: null while no batch of this shard had a usable pair. */
  readonly totals: (MethodTotals | null)[];
  readonly dropped: DroppedPair[];
  /** Token labels of the first scored pair, once there is one. */
  labels: string[] | null;
  /** The run's provenance (data description, backend, command, …), without the per-run counts. */
  readonly provenance: Readonly<Record<string, unknown>>;
}

export const isComplete = (p: Partial): boolean => p.batches.next >= p.batches.end;

/** JSON keeps NaN and ±Infinity as strings; numbers round-trip exactly (shortest round-trip form). */
export function partialJson(p: Partial): string {
  return `${JSON.stringify(p, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))}\n`;
}

const NON_FINITE = new Set(['NaN', 'Infinity', '-Infinity']);

/** Numbers written as strings by partialJson, back to numbers, in the numeric parts of totals. */
function reviveCells(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(reviveCells);
  if (isObject(x)) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, reviveCells(v)]));
  if (typeof x === 'string' && NON_FINITE.has(x)) return Number(x);
  return x;
}

const isCell = (c: unknown): boolean => Array.isArray(c) && c.every((x) => typeof x === 'number');

/** Totals whose cells are what totals.ts writes: [layer][position][unit] arrays of numbers, equal units. */
function wellFormedTotals(t: Record<string, unknown>): boolean {
  if (!isCell(t.metricClean) || !isCell(t.metricCorrupt)) return false;
  if (t.convergenceDelta !== undefined && !isCell(t.convergenceDelta)) return false;
  if (!isObject(t.cost) || !isCell(t.cost.forwardEquivalents) || !isCell(t.cost.seconds)) return false;
  if (!isObject(t.units) || !isObject(t.granularity)) return false;
  if (typeof t.seqLen !== 'number' || typeof t.firstDiff !== 'number') return false;
  return Object.values(t.scores as Record<string, unknown>).every((grid) => {
    if (!Array.isArray(grid)) return false;
    let units = -1;
    return grid.every(
      (row) =>
        Array.isArray(row) &&
        row.every((cells) => {
          if (!Array.isArray(cells) || !cells.every(isCell)) return false;
          if (units < 0) units = cells.length;
          return cells.length === units && units > 0;
        }),
    );
  });
}

/** The first top-level key where two identities differ, as a mismatch reason and a phrase. */
export function identityDifference(
  a: RunIdentity,
  b: RunIdentity,
): { reason: PartialMismatch; key: string } | undefined {
  const order: [keyof RunIdentity, PartialMismatch][] = [
    ['model', 'different-model'],
    ['command', 'different-methods'],
    ['methods', 'different-methods'],
    ['data', 'different-data'],
    ['sites', 'different-settings'],
    ['direction', 'different-settings'],
    ['normalize', 'different-settings'],
    ['settings', 'different-settings'],
    ['batchSize', 'different-settings'],
    ['bos', 'different-settings'],
  ];
  for (const [key, reason] of order) {
    if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) return { reason, key };
  }
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const k = key as keyof RunIdentity;
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) return { reason: 'different-settings', key };
  }
  return undefined;
}

const bad = (reason: PartialMismatch, message: string, extra: Record<string, unknown> = {}) =>
  badInput(message, { reason, ...extra });

const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);

/** Reads and checks the layout of a partial result (BAD_INPUT with reason not-a-partial when it is not one). */
export async function readPartial(path: string, what = 'partial result'): Promise<Partial> {
  const text = await readRegularText(path, { what, maxBytes: MAX_PARTIAL_BYTES });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw bad('not-a-partial', `${what} ${path} is not JSON (${(e as Error).message})`, { path });
  }
  const p = value as Record<string, unknown>;
  if (!isObject(p) || p.format !== PARTIAL_FORMAT) {
    throw bad(
      'not-a-partial',
      `${path} is not a partial result of relp (write one with relp attribute --shard i/n --out …)`,
      { path },
    );
  }
  if (p.version !== PARTIAL_VERSION) {
    throw bad(
      'not-a-partial',
      `${path} is a partial result of version ${String(p.version)}; this relp reads ${PARTIAL_VERSION}`,
      {
        path,
      },
    );
  }
  const shard = p.shard as Record<string, unknown>;
  const batches = p.batches as Record<string, unknown>;
  const identity = p.identity as Record<string, unknown>;
  const int = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  const ok =
    isObject(identity) &&
    Array.isArray(identity.methods) &&
    isObject(shard) &&
    int(shard.index) &&
    int(shard.count) &&
    (shard.index as number) < (shard.count as number) &&
    isObject(batches) &&
    int(batches.first) &&
    int(batches.end) &&
    int(batches.next) &&
    (batches.first as number) <= (batches.end as number) &&
    Array.isArray(p.totals) &&
    p.totals.length === identity.methods.length &&
    p.totals.every((t) => t === null || (isObject(t) && isObject(t.scores) && int(t.pairs))) &&
    Array.isArray(p.dropped) &&
    (p.labels === null || Array.isArray(p.labels)) &&
    isObject(p.provenance);
  if (!ok) throw bad('not-a-partial', `${path}: a partial result with missing or malformed fields`, { path });
  for (const t of p.totals as (Record<string, unknown> | null)[]) {
    if (!t) continue;
    for (const key of ['metricClean', 'metricCorrupt', 'scores', 'convergenceDelta', 'cost'])
      if (key in t) t[key] = reviveCells(t[key]);
    if (!wellFormedTotals(t)) throw bad('not-a-partial', `${path}: malformed score sums`, { path });
  }
  return p as unknown as Partial;
}
