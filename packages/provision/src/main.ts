/**
 * A minimal command line for provisioning without the relp CLI:
 *   tsx --conditions=source packages/provision/src/main.ts fetch smollm2-135m|gemma3-270m [--force]
 *   tsx --conditions=source packages/provision/src/main.ts list
 */
import { fetchModel, listModels, MODELS } from './index.js';

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === 'list') {
    const models = await listModels();
    if (models.length === 0) console.log('no models cached');
    for (const m of models) {
      console.log(`${m.alias}\t${m.size}\t${m.sha256}\t${m.present ? '' : '(missing) '}${m.path}`);
    }
    return 0;
  }
  if (cmd === 'fetch' && rest[0] !== undefined) {
    let lastLine = '';
    const r = await fetchModel(rest[0], {
      force: rest.includes('--force'),
      onProgress: (p) => {
        const pct = p.bytesTotal ? ` ${((100 * p.bytesDone) / p.bytesTotal).toFixed(0)}%` : '';
        const line = `${p.phase} (${p.source}) ${p.item}: ${p.bytesDone} bytes${pct}`;
        if (line !== lastLine) process.stderr.write(`${line}\n`);
        lastLine = line;
      },
    });
    console.log(
      `${r.alias}: ${r.path} (${r.manifest.size} bytes, sha256 ${r.manifest.sha256}, ${r.cached ? 'cached' : `from ${r.manifest.source.kind}`})`,
    );
    return 0;
  }
  console.error(`usage: main.ts fetch <${Object.keys(MODELS).join('|')}> [--force] | list`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
