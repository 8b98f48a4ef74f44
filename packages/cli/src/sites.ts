import type { Granularity, SiteRequest } from '@relp/core';
import { ALL_SITES, defaultGranularity, isSiteName, unitGranularities } from '@relp/core';
import { badInput } from '@relp/core/errors';

/** "resid_pre,attn_out,z,mlp_post" or "z:position" → site requests; the default granularity is the site table's. */
export function parseSites(list: string): SiteRequest[] {
  const out: SiteRequest[] = [];
  for (const raw of list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [site, gran] = raw.split(':') as [string, string | undefined];
    if (!isSiteName(site)) {
      throw badInput(`unknown site '${site}'; sites are ${CLI_SITES.join(', ')}`);
    }
    const granularities = ['position', ...unitGranularities(site)];
    if (gran !== undefined && !granularities.includes(gran)) {
      throw badInput(`unknown granularity '${gran}' for ${site}: use ${granularities.join(' or ')}`);
    }
    out.push({ site, granularity: (gran as Granularity | undefined) ?? defaultGranularity(site) });
  }
  if (out.length === 0) throw badInput('no sites given');
  return out;
}

/** The sites the error message lists: every model site but the norm scales (accepted, rarely wanted). */
const CLI_SITES = ALL_SITES.filter((s) => !s.endsWith('_scale'));
