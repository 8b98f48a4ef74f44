import { ErrorCodes, RelpError } from '../errors.js';
import type { LanguageModel } from '../model.js';
import {
  checkGranularity,
  type Granularity,
  isModelSite,
  isSiteName,
  type SiteDef,
  type SiteKey,
  type SiteName,
  siteDef,
  siteKey,
} from '../sites.js';
import type { SiteRequest } from './types.js';

/** One site at one layer to be scored, with the axes its scores keep. */
export interface ScoredKey {
  readonly def: SiteDef;
  /** def.name: the key of the result's score maps. */
  readonly site: string;
  readonly layer: number;
  readonly key: SiteKey;
  readonly granularity: Granularity;
  /** Activation patching: each unit patched at every position at once (SiteRequest.positions 'all'). */
  readonly allPositions?: boolean;
}

/**
 * Validates a site request list against the model and expands it to (site, layer) keys. A model site must be
 * one the model has; a run-time definition (SiteDef) must not reuse a model site's name.
 */
export function planSites(
  model: LanguageModel,
  requests: readonly (SiteName | SiteDef | SiteRequest<SiteName | SiteDef>)[],
): ScoredKey[] {
  if (requests.length === 0) throw new RelpError(ErrorCodes.BadInput, 'no sites requested');
  const out: ScoredKey[] = [];
  const seen = new Set<SiteKey>();
  const extra = requests
    .map((r) => (typeof r === 'string' ? undefined : 'site' in r ? r.site : r))
    .filter((d): d is SiteDef => typeof d === 'object' && !isModelSite(d));
  for (const r of requests) {
    const req: SiteRequest<SiteName | SiteDef> = typeof r === 'string' || !('site' in r) ? { site: r } : r;
    const def = siteDef(req.site);
    if (isModelSite(def)) {
      if (!model.sites.includes(def.name as SiteName)) {
        throw new RelpError(
          ErrorCodes.UnknownSite,
          `site '${def.name}' does not exist in ${model.architecture}; it has ${model.sites.join(', ')}`,
          { details: { site: def.name } },
        );
      }
    } else if (isSiteName(def.name)) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `a run-time site may not take the model site name '${def.name}'`,
      );
    }
    const granularity = req.granularity ?? 'position';
    checkGranularity(def, granularity, extra);
    if (req.positions !== undefined && req.positions !== 'each' && req.positions !== 'all') {
      throw new RelpError(
        ErrorCodes.BadInput,
        `positions must be 'each' or 'all' (got '${String(req.positions)}')`,
      );
    }
    const all = req.positions === 'all' ? { allPositions: true } : {};
    const nLayers = def.layers(model.dims);
    const layers = req.layers ?? Array.from({ length: nLayers }, (_, i) => i);
    for (const layer of layers) {
      if (!Number.isInteger(layer) || layer < 0 || layer >= nLayers) {
        throw new RelpError(
          ErrorCodes.UnknownSite,
          `layer ${layer} of site '${def.name}' is outside 0..${nLayers - 1}`,
        );
      }
      const key = siteKey(def, layer);
      if (seen.has(key)) throw new RelpError(ErrorCodes.BadInput, `site ${key} requested twice`);
      seen.add(key);
      out.push({ def, site: def.name, layer, key, granularity, ...all });
    }
  }
  return out;
}
