import { createRequire } from 'node:module';
import type { BackendChoice } from '@relp/core';
import type { ModelSource } from '@relp/loader';
import { normsTreatedByPreset } from '@relp/lrp-rules';

const require = createRequire(import.meta.url);

export function cliVersion(): string {
  try {
    return (require('../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Quotes an argument for a POSIX shell only when needed, so the recorded command can be pasted back. */
export function shellQuote(a: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`;
}

export interface Provenance {
  readonly relpVersion: string;
  readonly command: string;
  readonly model: Readonly<Record<string, unknown>>;
  readonly tokenizer: string;
  readonly data: Readonly<Record<string, unknown>>;
  readonly backend: { readonly name: string; readonly reason: string };
  /** The norms each rule preset's LN-rule treats in this model (docs/method.md §10.6); `none` treats none. */
  readonly normsTreated: Readonly<Record<string, readonly string[]>>;
  readonly createdAt: string;
  readonly node: string;
  readonly [k: string]: unknown;
}

/**
 * Everything needed to reproduce an output: model (path or id + content hash), data, backend, command line, and
 * which norms the rule presets treat in this model.
 */
export function provenance(
  argv: readonly string[],
  source: ModelSource,
  architecture: string,
  tokenizer: string,
  data: Readonly<Record<string, unknown>>,
  backend: BackendChoice,
  extra: Readonly<Record<string, unknown>> = {},
): Provenance {
  const args = argv.slice(2);
  return {
    relpVersion: cliVersion(),
    command: ['relp', ...args].map(shellQuote).join(' '),
    model: {
      ...(source.kind === 'hub' ? { id: source.id, revision: source.revision } : { path: source.path }),
      architecture,
      contentHash: source.contentHash,
      files: source.files,
    },
    tokenizer,
    data,
    backend: { name: backend.name, reason: backend.reason },
    ...extra,
    normsTreated: normsTreatedByPreset(architecture),
    createdAt: new Date().toISOString(),
    node: process.version,
  };
}
