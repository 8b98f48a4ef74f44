import { ErrorCodes, RelpError } from '../errors.js';
import type { LanguageModel } from '../model.js';
import { siteLayers } from '../model.js';
import { HEAD_SITES, type SiteKey, type SiteName, siteKey } from '../sites.js';
import type { Granularity, SiteRequest } from './types.js';

/** One site at one layer to be scored, with the axes its scores keep. */
export interface ScoredKey {
  readonly site: SiteName;
  readonly layer: number;
  readonly key: SiteKey;
  readonly granularity: Granularity;
}

/** Axis layout of a site's activation: which axis is position, head, unit (neuron). */
export interface SiteAxes {
  readonly position: number;
  readonly head?: number;
  readonly neuron?: number;
  readonly rank: number;
}

export function siteAxes(site: SiteName): SiteAxes {
  switch (site) {
    case 'pattern':
      // [B, H, Tq, Tk]: a cell is a query position.
      return { position: 2, head: 1, rank: 4 };
    case 'z':
    case 'q':
    case 'k':
    case 'v':
    case 'result':
      return { position: 1, head: 2, rank: 4 };
    case 'mlp_pre':
    case 'mlp_post':
      return { position: 1, neuron: 2, rank: 3 };
    default:
      return { position: 1, rank: 3 };
  }
}

/** Validates a site request list against the model and expands it to (site, layer) keys. */
export function planSites(model: LanguageModel, requests: readonly (SiteName | SiteRequest)[]): ScoredKey[] {
  if (requests.length === 0) throw new RelpError(ErrorCodes.BadInput, 'no sites requested');
  const out: ScoredKey[] = [];
  const seen = new Set<SiteKey>();
  for (const r of requests) {
    const req: SiteRequest = typeof r === 'string' ? { site: r } : r;
    if (!model.sites.includes(req.site)) {
      throw new RelpError(
        ErrorCodes.UnknownSite,
        `site '${req.site}' does not exist in ${model.architecture}; it has ${model.sites.join(', ')}`,
        { details: { site: req.site } },
      );
    }
    const granularity = req.granularity ?? 'position';
    const axes = siteAxes(req.site);
    if (granularity === 'head' && axes.head === undefined) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `site '${req.site}' has no head axis; per-head scores exist for ${[...HEAD_SITES, 'pattern'].join(', ')}`,
      );
    }
    if (granularity === 'neuron' && axes.neuron === undefined) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `site '${req.site}' has no neuron axis; use mlp_pre or mlp_post`,
      );
    }
    const nLayers = siteLayers(model.dims, req.site);
    const layers = req.layers ?? Array.from({ length: nLayers }, (_, i) => i);
    for (const layer of layers) {
      if (!Number.isInteger(layer) || layer < 0 || layer >= nLayers) {
        throw new RelpError(
          ErrorCodes.UnknownSite,
          `layer ${layer} of site '${req.site}' is outside 0..${nLayers - 1}`,
        );
      }
      const key = siteKey(req.site, layer);
      if (seen.has(key)) throw new RelpError(ErrorCodes.BadInput, `site ${key} requested twice`);
      seen.add(key);
      out.push({ site: req.site, layer, key, granularity });
    }
  }
  return out;
}
