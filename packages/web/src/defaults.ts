import type { SiteName } from '@relp/core';

/** The sites a browser run scores unless told otherwise. */
export const DEFAULT_SITES: readonly SiteName[] = ['resid_pre', 'attn_out', 'mlp_out'];
