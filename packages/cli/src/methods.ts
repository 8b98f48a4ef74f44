import type { Granularity, MethodKind, RuleSet, SiteName, SiteRequest } from '@relp/core';
import { isSiteName } from '@relp/core';
import { badInput } from '@relp/core/errors';
import { presetByName } from '@relp/lrp-rules';

export const METHOD_NAMES = ['activation-patching', 'atp', 'relp', 'relp-ah', 'ig'] as const;
export type MethodName = (typeof METHOD_NAMES)[number];

export interface MethodSpec {
  readonly name: MethodName;
  readonly kind: MethodKind;
  readonly rules?: RuleSet;
}

/** relp / relp-ah are attribution patching with a rule preset from @relp/lrp-rules. */
export function methodSpec(name: string): MethodSpec {
  switch (name) {
    case 'activation-patching':
    case 'ap':
      return { name: 'activation-patching', kind: 'activation-patching' };
    case 'atp':
      return { name: 'atp', kind: 'atp' };
    case 'relp':
    case 'relp-ah':
      return { name, kind: 'atp', rules: presetByName(name) };
    case 'ig':
      return { name: 'ig', kind: 'ig' };
    default:
      throw badInput(`unknown method '${name}'; choose one of ${METHOD_NAMES.join(', ')}`);
  }
}

export function parseMethodList(list: string): MethodSpec[] {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw badInput('no methods given');
  return [...new Set(names)].map(methodSpec);
}

/** Default granularity: z (and other head sites) per head, mlp_post / mlp_pre per neuron, others per position. */
function defaultGranularity(site: SiteName): Granularity {
  if (['z', 'result', 'q', 'k', 'v'].includes(site)) return 'head';
  if (site === 'mlp_post' || site === 'mlp_pre') return 'neuron';
  return 'position';
}

/** "resid_pre,attn_out,z,mlp_post" or "z:position" → site requests. */
export function parseSites(list: string): SiteRequest[] {
  const out: SiteRequest[] = [];
  for (const raw of list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [site, gran] = raw.split(':') as [string, string | undefined];
    if (!isSiteName(site)) {
      throw badInput(
        `unknown site '${site}'; sites are resid_pre, resid_mid, resid_post, attn_out, mlp_out, z, result, q, k, v, pattern, mlp_pre, mlp_post`,
      );
    }
    if (gran !== undefined && !['position', 'head', 'neuron'].includes(gran)) {
      throw badInput(`unknown granularity '${gran}' for ${site}: use position, head or neuron`);
    }
    out.push({ site, granularity: (gran as Granularity | undefined) ?? defaultGranularity(site) });
  }
  if (out.length === 0) throw badInput('no sites given');
  return out;
}
