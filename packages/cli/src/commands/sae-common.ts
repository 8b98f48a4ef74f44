import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { PairBatch } from '@relp/core';
import { badInput, isRelpError } from '@relp/core/errors';
import { readRegularText } from '@relp/core/node-files';
import { type MethodSettings, methodOptions, type NamedMethod } from '@relp/methods';
import {
  attributeFeatures,
  type FeatureAttributionResult,
  type PositionMode,
  type SparseAutoencoder,
} from '@relp/sae';
import { listCachedSaes, loadSaeFolder } from '@relp/sae/node';
import type { Session } from '../session.js';

// What `relp sae attribute` and `relp sae circuit` share: loading SAEs, reading --positions, one method's run.

/**
 * SAEs from a comma-separated list: each entry a SAELens folder (cfg.json), or a folder holding such folders (all
 * of them, e.g. ~/.cache/relp/saes/smollm2-135m); `site.layer` entries of `only` keep those sites.
 */
export async function loadSaes(
  list: string,
  cwd: string,
  only?: readonly string[],
): Promise<SparseAutoencoder[]> {
  const entries = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (entries.length === 0) throw badInput('no SAE given: pass --sae <folder>[,<folder>…]');
  const folders: string[] = [];
  for (const e of entries) {
    const dir = resolve(cwd, e.replace(/^~(?=\/)/, process.env.HOME ?? '~'));
    if (!existsSync(dir)) throw badInput(`SAE folder ${dir} does not exist`);
    if (existsSync(join(dir, 'cfg.json'))) folders.push(dir);
    else {
      const found = await listCachedSaes(dir);
      if (found.length === 0) throw badInput(`${dir} holds no SAELens SAE folder (cfg.json)`);
      folders.push(...found.map((f) => f.path).sort());
    }
  }
  const saes: SparseAutoencoder[] = [];
  try {
    for (const f of folders) saes.push(await loadSaeFolder(f));
  } catch (e) {
    for (const s of saes) s.dispose();
    throw e;
  }
  const kept = only ? saes.filter((s) => only.includes(`${s.hookPoint.site}.${s.hookPoint.layer}`)) : saes;
  for (const s of saes) if (!kept.includes(s)) s.dispose();
  if (kept.length === 0) throw badInput(`no SAE at the sites ${only?.join(', ')}`);
  return kept;
}

export function positionsOf(s: string): PositionMode {
  if (s !== 'sum' && s !== 'each') throw badInput(`--positions must be sum or each (got ${s})`);
  return s;
}

/** One method's feature attribution, its cost logged. */
export async function attributeOne(
  s: Session,
  batch: PairBatch,
  saes: readonly SparseAutoencoder[],
  m: NamedMethod,
  o: {
    positions: PositionMode;
    normalize: boolean;
    direction?: string;
    settings: MethodSettings;
  },
): Promise<FeatureAttributionResult> {
  if (o.direction !== undefined && o.direction !== 'denoising' && o.direction !== 'noising') {
    throw badInput('--direction must be denoising or noising');
  }
  const r = await attributeFeatures(s.loaded.model, batch, saes, {
    ...methodOptions(m, o.settings),
    positions: o.positions,
    normalize: o.normalize,
    ...(o.direction ? { direction: o.direction as 'denoising' | 'noising' } : {}),
    onProgress: s.progress.labelled(m.name),
  });
  s.progress.stop();
  s.log.info(
    `${m.name}: ${r.cost.forwardPasses} forward, ${r.cost.backwardPasses} backward, ${r.cost.seconds.toFixed(2)} s, ` +
      `peak ${(r.cost.peakTensorBytes / 2 ** 20).toFixed(0)} MiB`,
  );
  return r;
}

/** What the provenance records of each SAE. */
export function saeInfo(saes: readonly SparseAutoencoder[]) {
  return saes.map((x) => ({
    site: `${x.hookPoint.site}.${x.hookPoint.layer}`,
    dSae: x.dSae,
    activation: x.activation.kind === 'topk' ? `topk(${x.activation.k})` : x.activation.kind,
    provenance: x.provenance,
  }));
}

/** The largest text file read (a corpus of a few hundred million characters). */
const MAX_TEXT_BYTES = 512 * 2 ** 20;

/** A text file's contents (`flag` names it in messages); an unreadable or empty file is the user's to fix. */
export async function readText(path: string, flag: string, given: string): Promise<string> {
  let text: string;
  try {
    text = await readRegularText(path, { what: flag, maxBytes: MAX_TEXT_BYTES });
  } catch (e) {
    if (isRelpError(e)) throw e; // a FIFO or device, too large, not UTF-8: BAD_INPUT already
    throw badInput(
      `cannot read ${flag} ${given}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  if (text.trim() === '') throw badInput(`${flag} ${given} is empty`);
  return text;
}

/**
 * Runs `f` (tokenWindows); a reason it gives for no window comes back about `source` ("--text notes.txt"), naming
 * the flag that changes it (`flags`: reason → "--context 128").
 */
export function explainNoWindow<T>(f: () => T, source: string, flags: Readonly<Record<string, string>>): T {
  try {
    return f();
  } catch (e) {
    const flag = isRelpError(e) ? flags[String(e.details.reason)] : undefined;
    if (flag === undefined || !isRelpError(e)) throw e;
    throw badInput(`${source}: ${e.message} (${flag})`, e.details);
  }
}
