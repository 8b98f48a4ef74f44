/**
 * A data set scored batch by batch: each batch of `--batch-size` pairs is checked, padded and scored by every
 * method on its own (one batch in memory at a time), and added to each method's exact totals (totals.ts). With a
 * checkpoint path the totals are written atomically after every batch, and a run finds its checkpoint and goes on
 * from the next batch. Shards (shard.ts) score only their own batches.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { attribute, makePairBatch, type SiteRequest } from '@relp/core';
import { badInput, isRelpError } from '@relp/core/errors';
import { type MethodSettings, methodOptions, type NamedMethod, parseMethodList } from '@relp/methods';
import { checkPairs, type DroppedPair, describeDropped, type PairRecord, tokenLabels } from '@relp/tasks';
import { prependsBos } from './data.js';
import { exactValue } from './exact-sum.js';
import { writeFileAtomic } from './output.js';
import {
  identityDifference,
  isComplete,
  PARTIAL_FORMAT,
  PARTIAL_VERSION,
  type Partial,
  partialJson,
  type RunIdentity,
  readPartial,
} from './partial.js';
import { combine, nothingScored } from './result.js';
import type { Session } from './session.js';
import { type Shard, shardBatches, shardName } from './shard.js';
import { batchesOf, type PairSource } from './stream.js';
import { addBatch, emptyTotals } from './totals.js';

/** The pairs per batch when --batch-size is not given. */
export const DEFAULT_BATCH_SIZE = 32;

/** Test hook: the process kills itself (SIGKILL) after this many batches of this process were checkpointed. */
export const KILL_AFTER_ENV = 'RELP_TEST_KILL_AFTER_BATCHES';

export interface BatchedOptions {
  readonly source: PairSource;
  readonly methods: readonly NamedMethod[];
  readonly sites: readonly SiteRequest[];
  readonly direction?: 'denoising' | 'noising';
  readonly normalize: boolean;
  readonly settings: MethodSettings;
  readonly batchSize: number;
  readonly shard: Shard;
  /** Where to checkpoint after every batch; none: no checkpoint. */
  readonly checkpoint?: string;
  /** Go on from a matching checkpoint (default); false: start over. */
  readonly resume: boolean;
  /** --bos / --no-bos. */
  readonly bos?: boolean;
  readonly command: string;
  /** One untimed AtP run on the first scored batch before the timed ones (relp compare). */
  readonly warmUp?: boolean;
  /** The run's provenance, without per-run counts. */
  readonly provenance: Readonly<Record<string, unknown>>;
  readonly extraIdentity?: Readonly<Record<string, unknown>>;
}

export function runIdentity(s: Session, o: BatchedOptions, bos: boolean): RunIdentity {
  return {
    command: o.command,
    model: { contentHash: s.loaded.source.contentHash, architecture: s.loaded.model.architecture },
    methods: o.methods.map((m) => m.name),
    sites: JSON.stringify(o.sites),
    direction: o.direction ?? 'denoising',
    normalize: o.normalize,
    settings: { ...o.settings, ...o.extraIdentity },
    batchSize: o.batchSize,
    bos,
    data: o.source.identity,
  };
}

/** The checkpoint, when there is one and it belongs to this run; BAD_INPUT when it belongs to another. */
async function findCheckpoint(
  path: string,
  identity: RunIdentity,
  shard: Shard,
  resume: boolean,
): Promise<Partial | undefined> {
  if (!existsSync(path)) return undefined;
  if (!resume) {
    await rm(path, { force: true });
    return undefined;
  }
  let p: Partial;
  try {
    p = await readPartial(path, 'checkpoint');
  } catch (e) {
    if (!isRelpError(e)) throw e;
    throw badInput(`checkpoint ${path} cannot be resumed (${e.message}): pass --no-resume to start over`, {
      path,
      reason: 'not-a-partial',
    });
  }
  const diff = identityDifference(p.identity, identity);
  if (diff || p.shard.index !== shard.index || p.shard.count !== shard.count) {
    const what = diff ? `its ${diff.key}` : `its shard ${shardName(p.shard)}`;
    throw badInput(
      `checkpoint ${path} is from another run (${what} differs from this one's): pass --no-resume to start over and replace it, or run with the settings it was written with`,
      { path, reason: diff?.reason ?? 'different-shard' },
    );
  }
  return p;
}

const WARM_UP = parseMethodList('atp')[0]!;

/**
 * Scores the shard's batches (all of them without --shard) and returns the partial result: complete unless the
 * process was stopped. Progress: pairs read of the shard's, with time left.
 */
export async function runBatched(s: Session, o: BatchedOptions): Promise<Partial> {
  const { model, tokenizer } = s.loaded;
  const bos = prependsBos(o.bos === undefined ? {} : { bos: o.bos }, tokenizer, o.source.hasText);
  const identity = runIdentity(s, o, bos);
  const range = shardBatches(o.shard, o.source.records, o.batchSize);
  const found = o.checkpoint ? await findCheckpoint(o.checkpoint, identity, o.shard, o.resume) : undefined;
  const state: Partial = found ?? {
    format: PARTIAL_FORMAT,
    version: PARTIAL_VERSION,
    identity,
    shard: o.shard,
    batches: { first: range.first, end: range.end, next: range.first },
    totals: o.methods.map(() => null),
    dropped: [],
    labels: null,
    provenance: o.provenance,
  };
  const firstRecord = range.first * o.batchSize;
  const endRecord = Math.min(range.end * o.batchSize, o.source.records);
  if (found) {
    s.log.info(
      `resuming from ${o.checkpoint}: ${state.batches.next - range.first} of ${range.end - range.first} batches done`,
    );
  }
  s.log.info(
    `data: ${o.source.records} pairs in batches of ${o.batchSize}` +
      (o.shard.count > 1
        ? `; shard ${shardName(o.shard)}: batches ${range.first}–${range.end - 1} (pairs ${firstRecord}–${endRecord - 1})`
        : ''),
  );
  const pad = (tokenizer as { eosId?: number } | undefined)?.eosId ?? 0;
  const padId = pad < model.dims.vocabSize ? pad : 0;
  const killAfter = Number(s.io.env[KILL_AFTER_ENV] ?? Number.NaN);
  let ranHere = 0;
  let warmed = !o.warmUp;
  const report = (done: number) =>
    s.progress.update({ phase: 'pairs', done: done - firstRecord, total: endRecord - firstRecord });
  if (state.batches.next < range.end) report(Math.max(firstRecord, state.batches.next * o.batchSize));
  await removeOnUserError(o.checkpoint, async () => {
    for await (const b of batchesOf(o.source.read(), o.batchSize)) {
      if (b.index >= range.end) break;
      if (b.index < state.batches.next) continue;
      const checked = checkPairs(b.records as PairRecord[], tokenizer, {
        prependBos: bos,
        contextLength: model.dims.contextLength,
        vocabSize: model.dims.vocabSize,
        what: o.source.what,
        allowNone: true,
      });
      state.dropped.push(...checked.dropped.map((d): DroppedPair => ({ ...d, index: d.index + b.first })));
      if (checked.pairs.length > 0) {
        const pairs = checked.pairs.map((p) => ({
          clean: p.clean,
          corrupt: p.corrupt,
          answer: p.answer,
          wrong: p.wrong,
        }));
        state.labels ??= tokenLabels(pairs[0]!.clean, tokenizer);
        const batch = makePairBatch(pairs, { dims: model.dims, padId });
        if (!warmed) {
          await attribute(model, batch, { ...methodOptions(WARM_UP), sites: o.sites });
          warmed = true;
        }
        for (const [i, m] of o.methods.entries()) {
          const r = await attribute(model, batch, {
            ...methodOptions(m, o.settings),
            sites: o.sites,
            ...(o.direction ? { direction: o.direction } : {}),
          });
          state.totals[i] ??= emptyTotals(r);
          addBatch(state.totals[i]!, r, pairs.length);
        }
      }
      state.batches.next = b.index + 1;
      if (o.checkpoint) await writeFileAtomic(o.checkpoint, partialJson(state), true);
      report(b.first + b.records.length);
      ranHere++;
      if (ranHere === killAfter) process.kill(process.pid, 'SIGKILL');
    }
    s.progress.stop();
    if (!isComplete(state)) {
      throw badInput(
        `--data ${o.source.what} ended before batch ${state.batches.next}: it changed while relp read it`,
      );
    }
    if (o.shard.count === 1 && state.totals.every((t) => t === null)) {
      nothingScored(combine([state]), o.source.what);
    }
  });
  if (state.dropped.length > 0) {
    const scored = state.totals.find((t) => t !== null)?.pairs ?? 0;
    const checked = {
      pairs: Array(scored),
      dropped: state.dropped,
      droppedByReason: {} as Record<string, number>,
    };
    for (const d of state.dropped)
      checked.droppedByReason[d.reason] = (checked.droppedByReason[d.reason] ?? 0) + 1;
    s.log.warn(
      `${describeDropped(checked)} (of this ${o.shard.count > 1 ? 'shard' : 'run'}; listed in the result)`,
    );
  }
  for (const t of state.totals) {
    if (!t) continue;
    s.log.info(
      `${t.label}: ${t.cost.forwardPasses} forward, ${t.cost.backwardPasses} backward, ${exactValue(t.cost.seconds).toFixed(2)} s over ${t.batches} batches`,
    );
  }
  return state;
}

/**
 * Runs `f`; when it fails with the user's error (bad data, a metric that cannot be normalised), the checkpoint
 * is removed: a run on fixed input is another run, and must not find it.
 */
export async function removeOnUserError<T>(checkpoint: string | undefined, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (checkpoint && isRelpError(e) && e.isUserError) await rm(checkpoint, { force: true });
    throw e;
  }
}
