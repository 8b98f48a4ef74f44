/**
 * Typed site names, one constant each (as tfjs names its kernels), so a typo fails to compile instead of
 * matching nothing. Meanings follow TransformerLens (see METHOD.md §2). Shapes, with B batch, T positions,
 * H heads, d model width, dh head width, m MLP width:
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

export type SiteName = (typeof Site)[keyof typeof Site];

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
export const HEAD_SITES: readonly SiteName[] = [Site.Z, Site.Result, Site.Q, Site.K, Site.V];

export function isSiteName(s: string): s is SiteName {
  return (ALL_SITES as readonly string[]).includes(s);
}

/** A site at one layer. The final norm's scale lives at layer 0 by convention. */
export interface SiteRef {
  readonly site: SiteName;
  readonly layer: number;
}

export type SiteKey = `${SiteName}.${number}`;

export function siteKey(site: SiteName, layer: number): SiteKey {
  return `${site}.${layer}`;
}

export function parseSiteKey(key: SiteKey): SiteRef {
  const dot = key.lastIndexOf('.');
  return { site: key.slice(0, dot) as SiteName, layer: Number(key.slice(dot + 1)) };
}
