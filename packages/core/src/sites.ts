import { ErrorCodes, RelpError } from './errors.js';
import type { ModelDims } from './model.js';

/**
 * Typed site names, one constant each (as tfjs names its kernels), so a typo fails to compile instead of
 * matching nothing. Meanings follow TransformerLens. Shapes, with B batch, T positions, H heads, d model width,
 * dh head width, m MLP width:
 */
export const Site = {
  /** Residual stream entering block l (block 0: the embeddings). [B,T,d] */
  ResidPre: 'resid_pre',
  /** Residual after the attention add (sequential blocks only). [B,T,d] */
  ResidMid: 'resid_mid',
  /** Residual leaving block l. [B,T,d] */
  ResidPost: 'resid_post',
  /** What the attention sub-block adds to the residual (after W_O and its bias). [B,T,d] */
  AttnOut: 'attn_out',
  /** What the MLP sub-block adds to the residual. [B,T,d] */
  MlpOut: 'mlp_out',
  /** Per-head attention-weighted values. [B,T,H,dh] */
  Z: 'z',
  /** Per-head contribution after W_O (no bias). [B,T,H,d] */
  Result: 'result',
  /** Attention pattern (softmax output). [B,H,T,T] */
  Pattern: 'pattern',
  /** Per-head queries, keys and values (after rotary where the model has it). [B,T,H,dh] (k, v: KV heads) */
  Q: 'q',
  K: 'k',
  V: 'v',
  /** MLP pre-activation (the gate's input for gated MLPs). [B,T,m] */
  MlpPre: 'mlp_pre',
  /** MLP hidden activation after the nonlinearity (times the up projection for gated MLPs). [B,T,m] */
  MlpPost: 'mlp_post',
  /** Normaliser sqrt(mean(x_c²)+eps) of the norm before attention, before the MLP, and the final norm. [B,T,1] */
  Ln1Scale: 'ln1_scale',
  Ln2Scale: 'ln2_scale',
  LnFinalScale: 'ln_final_scale',
} as const;

/** A site of the model itself (every family calls `ctx.site` with these names). */
export type SiteName = (typeof Site)[keyof typeof Site];

/** An axis a score can keep besides position: a head, an MLP neuron, or a feature (e.g. of an SAE). */
export type UnitGranularity = 'head' | 'neuron' | 'feature';

/**
 * What a score is computed for at a site: the whole [layer × position] cell summed over the hidden axes, or
 * per unit of a unit axis (head, neuron, feature) that the site has.
 */
export type Granularity = 'position' | UnitGranularity;

export const GRANULARITIES: readonly Granularity[] = ['position', 'head', 'neuron', 'feature'];

/** Axis layout of a site's activation: which axis is position, and which (if any) are head, neuron, feature. */
export interface SiteAxes {
  readonly position: number;
  readonly head?: number;
  readonly neuron?: number;
  readonly feature?: number;
  readonly rank: number;
}

/**
 * Everything the engine knows about one kind of site. The model's own sites are the entries of `SITES`; a
 * package can define more at run time (e.g. an SAE's features and error term, which its splice records with
 * `ctx.site`) and hand them to `attribute` and the circuit code like any model site.
 */
export interface SiteDef {
  /** The name in site keys ("name.layer") and in results' score maps; unique, no model site's name. */
  readonly name: string;
  /** One line for help texts and docs. */
  readonly description: string;
  /** The activation's shape in a run of `batch` rows over `seq` positions (at every position). */
  shape(dims: ModelDims, batch: number, seq: number): number[];
  readonly axes: SiteAxes;
  /** How many layers the site has: its layers are 0 … layers − 1. */
  layers(dims: Pick<ModelDims, 'nLayers'>): number;
  /** The granularity the CLI and the web use when none is asked for. */
  readonly defaultGranularity: Granularity;
  /**
   * The block whose computation produces the site at `layer`: a run that changes the site from there on can
   * start from the residual entering that block (resid_pre of it) and reuse the earlier positions' keys and
   * values. null: after every block (the final norm), so such a run starts from tokens.
   */
  block(layer: number): number | null;
  /**
   * Under a readout of one position per row the site exists only there: its position axis then has one entry
   * (the final norm's scale, computed only where logits are read).
   */
  readonly readoutOnly: boolean;
  /** Whether circuit nodes may sit at this site (ablating a cell to its mean or corrupt value is meaningful). */
  readonly circuitNodes: boolean;
  /**
   * Sites of one group are parts of one activation (an SAE's features and error make up its host site): IG's
   * site mode interpolates them together, on one path, and differentiates them together. Default: a group of
   * its own.
   */
  readonly group?: string;
  /**
   * Mostly equal on the two runs (an SAE's features): activation patching runs only the units whose source and
   * base values differ somewhere; the others score exactly 0, as patching an equal value changes nothing.
   */
  readonly sparse?: boolean;
}

type Dims = ModelDims;
const perBlock = (dims: Pick<Dims, 'nLayers'>) => dims.nLayers;
const sameBlock = (layer: number) => layer;
const residual = (description: string): Omit<SiteDef, 'name'> => ({
  description,
  shape: (dims, b, t) => [b, t, dims.dModel],
  axes: { position: 1, rank: 3 },
  layers: perBlock,
  defaultGranularity: 'position',
  block: sameBlock,
  readoutOnly: false,
  circuitNodes: true,
});
const perHead = (
  description: string,
  width: (dims: Dims) => number,
  heads: (dims: Dims) => number = (d) => d.nHeads,
): Omit<SiteDef, 'name'> => ({
  description,
  shape: (dims, b, t) => [b, t, heads(dims), width(dims)],
  axes: { position: 1, head: 2, rank: 4 },
  layers: perBlock,
  defaultGranularity: 'head',
  block: sameBlock,
  readoutOnly: false,
  circuitNodes: true,
});
const mlpHidden = (description: string): Omit<SiteDef, 'name'> => ({
  description,
  shape: (dims, b, t) => [b, t, dims.dMlp],
  axes: { position: 1, neuron: 2, rank: 3 },
  layers: perBlock,
  defaultGranularity: 'neuron',
  block: sameBlock,
  readoutOnly: false,
  circuitNodes: true,
});
const normScale = (description: string): Omit<SiteDef, 'name'> => ({
  description,
  shape: (_dims, b, t) => [b, t, 1],
  axes: { position: 1, rank: 3 },
  layers: perBlock,
  defaultGranularity: 'position',
  block: sameBlock,
  readoutOnly: false,
  circuitNodes: false,
});

const TABLE: { readonly [S in SiteName]: Omit<SiteDef, 'name'> } = {
  resid_pre: residual('residual stream entering the block (block 0: the embeddings)'),
  resid_mid: residual('residual after the attention add (sequential blocks only)'),
  resid_post: residual('residual stream leaving the block'),
  attn_out: residual('what the attention sub-block adds to the residual'),
  mlp_out: residual('what the MLP sub-block adds to the residual'),
  z: perHead('per-head attention-weighted values', (d) => d.dHead),
  result: perHead('per-head contribution after W_O (no bias)', (d) => d.dModel),
  pattern: {
    description: 'attention pattern (softmax output), a cell per query position',
    shape: (dims, b, t) => [b, dims.nHeads, t, t],
    // [B, H, Tq, Tk]: a cell is a query position.
    axes: { position: 2, head: 1, rank: 4 },
    layers: perBlock,
    defaultGranularity: 'position',
    block: sameBlock,
    readoutOnly: false,
    circuitNodes: false,
  },
  q: perHead('per-head queries (after rotary embeddings)', (d) => d.dHead),
  k: perHead(
    'per-head keys (key/value heads; after rotary embeddings)',
    (d) => d.dHead,
    (d) => d.nKvHeads,
  ),
  v: perHead(
    'per-head values (key/value heads)',
    (d) => d.dHead,
    (d) => d.nKvHeads,
  ),
  mlp_pre: mlpHidden('MLP pre-activation (the gate input of gated MLPs)'),
  mlp_post: mlpHidden('MLP hidden activation after the nonlinearity (times up for gated MLPs)'),
  ln1_scale: normScale('normaliser of the norm before attention'),
  ln2_scale: normScale('normaliser of the norm before the MLP'),
  // The final norm: one "layer" (0), after every block, computed only at readout positions.
  ln_final_scale: {
    ...normScale('normaliser of the final norm (layer 0 only)'),
    layers: () => 1,
    block: () => null,
    readoutOnly: true,
  },
};

/**
 * The sites of edge attribution (docs/method.md §17): what each downstream node reads and what each attention head
 * writes, one copy per reader. They are not in the site table of `SITES` (not offered as ordinary sites): a run
 * lists them as run-time sites (`RunContextOptions.extraSites`), and a block computes them only when its run asks
 * (`ctx.wants`), so runs that do not ask are unchanged bit for bit.
 */
export const EdgeSite = {
  /** The residual as each query head reads it, before the norm: one copy per head. [B,T,H,d] */
  QInput: 'q_input',
  /** The residual as each key/value head's key projection reads it. [B,T,H_kv,d] */
  KInput: 'k_input',
  /** The residual as each key/value head's value projection reads it. [B,T,H_kv,d] */
  VInput: 'v_input',
  /** The residual as the MLP reads it, before its norm. [B,T,d] */
  MlpInput: 'mlp_input',
  /**
   * What each head adds to the residual: `result`, or with a post-attention norm (Gemma 3) the head's result
   * through that norm with the whole attention output's normaliser; attn_out is then Σ_h head_out (+ bias). [B,T,H,d]
   */
  HeadOut: 'head_out',
} as const;

export type EdgeSiteName = (typeof EdgeSite)[keyof typeof EdgeSite];

const edgeInput = (description: string, heads: (dims: Dims) => number): Omit<SiteDef, 'name'> => ({
  ...perHead(description, (d) => d.dModel, heads),
  circuitNodes: false,
});

const EDGE_TABLE: { readonly [S in EdgeSiteName]: Omit<SiteDef, 'name'> } = {
  q_input: edgeInput('the residual as each query head reads it (before the norm)', (d) => d.nHeads),
  k_input: edgeInput('the residual as each key head reads it (before the norm)', (d) => d.nKvHeads),
  v_input: edgeInput('the residual as each value head reads it (before the norm)', (d) => d.nKvHeads),
  mlp_input: { ...residual('the residual as the MLP reads it (before its norm)'), circuitNodes: false },
  head_out: {
    ...perHead('what each attention head adds to the residual', (d) => d.dModel),
    circuitNodes: false,
  },
};

/** The edge sites' definitions, by name: pass `EDGE_SITE_DEFS` as a run's `extraSites`. */
export const EDGE_SITES: { readonly [S in EdgeSiteName]: SiteDef & { readonly name: S } } =
  Object.fromEntries(
    Object.entries(EDGE_TABLE).map(([name, def]) => [name, Object.freeze({ name, ...def })]),
  ) as { readonly [S in EdgeSiteName]: SiteDef & { readonly name: S } };

export const EDGE_SITE_DEFS: readonly SiteDef[] = Object.values(EDGE_SITES);

/** The model's own sites: the one table every consumer reads (shapes, axes, layers, granularity, text). */
export const SITES: { readonly [S in SiteName]: SiteDef & { readonly name: S } } = Object.fromEntries(
  Object.entries(TABLE).map(([name, def]) => [name, Object.freeze({ name, ...def })]),
) as { readonly [S in SiteName]: SiteDef & { readonly name: S } };

export const ALL_SITES: readonly SiteName[] = Object.values(Site);

/** Sites whose hidden axis is the model width: the site types of the [layer × position] grids. */
export const RESIDUAL_LIKE_SITES: readonly SiteName[] = [
  Site.ResidPre,
  Site.ResidMid,
  Site.ResidPost,
  Site.AttnOut,
  Site.MlpOut,
];

/** Sites that carry a head axis at dimension 2. */
export const HEAD_SITES: readonly SiteName[] = ALL_SITES.filter((s) => SITES[s].axes.head === 2);

export function isSiteName(s: string): s is SiteName {
  return Object.hasOwn(TABLE, s);
}

/** Whether a definition is one of the model's own sites (checked against `model.sites`). */
export function isModelSite(def: SiteDef): boolean {
  return isSiteName(def.name) && SITES[def.name] === def;
}

/** The definition of a model site name, or the definition itself. */
export function siteDef(site: SiteName | SiteDef): SiteDef {
  return typeof site === 'string' ? SITES[site] : site;
}

/** The definition a site name stands for (a model site or one of `extra`), or undefined. */
export function findSite(name: string, extra: readonly SiteDef[] = []): SiteDef | undefined {
  return isSiteName(name) ? SITES[name] : extra.find((d) => d.name === name);
}

/**
 * The definition a site name stands for: a model site, or one of `extra` (run-time sites); UNKNOWN_SITE
 * otherwise, naming what exists.
 */
export function resolveSite(name: string, extra: readonly SiteDef[] = []): SiteDef {
  const def = findSite(name, extra);
  if (def) return def;
  throw new RelpError(
    ErrorCodes.UnknownSite,
    `unknown site '${name}'; sites are ${[...ALL_SITES, ...extra.map((d) => d.name)].join(', ')}`,
    { details: { site: name } },
  );
}

/** Shape of a site's activation for a batch of B sequences of T tokens (at every position). */
export function siteShape(dims: ModelDims, site: SiteName | SiteDef, batch: number, seq: number): number[] {
  return siteDef(site).shape(dims, batch, seq);
}

/** Number of layers at which a site exists (the final norm's scale: one, layer 0). */
export function siteLayers(dims: Pick<ModelDims, 'nLayers'>, site: SiteName | SiteDef): number {
  return siteDef(site).layers(dims);
}

export function siteAxes(site: SiteName | SiteDef): SiteAxes {
  return siteDef(site).axes;
}

/** The axis a granularity keeps besides position (undefined for 'position' or an axis the site lacks). */
export function unitAxis(site: SiteName | SiteDef, granularity: Granularity): number | undefined {
  return granularity === 'position' ? undefined : siteDef(site).axes[granularity];
}

/** The unit granularities a site supports, e.g. ['head'] for z. */
export function unitGranularities(site: SiteName | SiteDef): UnitGranularity[] {
  const axes = siteDef(site).axes;
  return (['head', 'neuron', 'feature'] as const).filter((g) => axes[g] !== undefined);
}

export function defaultGranularity(site: SiteName | SiteDef): Granularity {
  return siteDef(site).defaultGranularity;
}

/** Raises BAD_INPUT when a site has no axis for the granularity, naming the sites that have one. */
export function checkGranularity(
  site: SiteName | SiteDef,
  granularity: Granularity,
  extra: readonly SiteDef[] = [],
): void {
  const def = siteDef(site);
  if (!(GRANULARITIES as readonly string[]).includes(granularity)) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `unknown granularity '${String(granularity)}' for ${def.name}: use ${GRANULARITIES.join(', ')}`,
    );
  }
  if (granularity === 'position' || def.axes[granularity] !== undefined) return;
  const having = [...ALL_SITES.map((s) => SITES[s]), ...extra]
    .filter((d) => d.axes[granularity] !== undefined)
    .map((d) => d.name);
  throw new RelpError(
    ErrorCodes.BadInput,
    `site '${def.name}' has no ${granularity} axis; per-${granularity} scores exist for ${having.join(', ')}`,
  );
}

/** Shape of a site's activation in a run whose metric reads out one position per row (`readout`) or all. */
export function siteShapeInRun(
  dims: ModelDims,
  site: SiteName | SiteDef,
  batch: number,
  seq: number,
  readout: boolean,
): number[] {
  const def = siteDef(site);
  const shape = def.shape(dims, batch, seq);
  if (def.readoutOnly && readout) shape[def.axes.position] = 1;
  return shape;
}

/** A model site at one layer. The final norm's scale lives at layer 0 (see SITES). */
export interface SiteRef {
  readonly site: SiteName;
  readonly layer: number;
}

/** "name.layer": a model site's (`${SiteName}.${n}`) or a run-time site's. */
export type SiteKey = `${string}.${number}`;

export function siteKey(site: SiteName | SiteDef, layer: number): SiteKey {
  return `${typeof site === 'string' ? site : site.name}.${layer}`;
}

/** Splits any site key into its name and layer. */
export function splitSiteKey(key: SiteKey): { readonly name: string; readonly layer: number } {
  const dot = key.lastIndexOf('.');
  return { name: key.slice(0, dot), layer: Number(key.slice(dot + 1)) };
}

/** Parses a model site's key (the name is not checked: see isSiteName). */
export function parseSiteKey(key: SiteKey): SiteRef {
  const { name, layer } = splitSiteKey(key);
  return { site: name as SiteName, layer };
}

/**
 * Whether a key names a site that exists: a model site among `sites` (the model's list) or one of `extra`
 * (run-time sites), at a layer in range.
 */
export function siteKeyExists(
  key: SiteKey,
  sites: readonly SiteName[],
  dims: Pick<ModelDims, 'nLayers'>,
  extra: readonly SiteDef[] = [],
): boolean {
  const { name, layer } = splitSiteKey(key);
  const def = findSite(name, extra);
  if (def !== undefined && isModelSite(def) && !sites.includes(name as SiteName)) return false;
  return def !== undefined && Number.isInteger(layer) && layer >= 0 && layer < def.layers(dims);
}
