/**
 * Compares packages/weights' GGUF loading (ggufToWeightMap: dequantisation, HF names, llama q/k un-permutation,
 * Gemma norm shift) and ggufConfig against transformers' reference written by gguf_check_real.py.
 * Not a CI test (the model files are not in the repository). Usage: see gguf_check_real.py.
 */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ggufConfig, ggufToWeightMap, parseGguf, readSafetensors } from '../../packages/weights/src/index.js';

/** JSON with object keys sorted, so key order does not count as a difference. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x !== null && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(
          Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : x,
  );
}

const [refDir, ...files] = process.argv.slice(2);
if (refDir === undefined || files.length === 0) {
  console.error('usage: gguf_check_real.ts REF_DIR FILE.gguf...');
  process.exit(2);
}
let failed = false;
for (const path of files) {
  const stem = basename(path).replace(/\.gguf$/, '');
  const t0 = performance.now();
  const bytes = new Uint8Array(readFileSync(path));
  const file = parseGguf(bytes);
  const tParse = performance.now() - t0;
  const config = ggufConfig(file);
  const refConfig = JSON.parse(readFileSync(join(refDir, `${stem}.config.json`), 'utf8')) as Record<
    string,
    unknown
  >;
  const configDiffs: string[] = [];
  for (const [k, v] of Object.entries(refConfig)) {
    if (!(k in config) || v === null) continue;
    if (canonical(v) !== canonical(config[k]))
      configDiffs.push(`${k}: ours ${JSON.stringify(config[k])} ref ${JSON.stringify(v)}`);
  }
  const ref = readSafetensors(new Uint8Array(readFileSync(join(refDir, `${stem}.safetensors`))));
  const ours = ggufToWeightMap(file);
  const refNames = new Set(ref.names());
  const ourNames = new Set(ours.names());
  const missing = [...refNames].filter((n) => !ourNames.has(n));
  const extra = [...ourNames].filter((n) => !refNames.has(n));
  let maxAbs = 0;
  let maxName = '';
  let values = 0;
  const t1 = performance.now();
  const perType = new Map<string, number>();
  for (const name of refNames) {
    if (!ourNames.has(name)) continue;
    const a = ours.get(name)!;
    const b = ref.get(name)!;
    if (JSON.stringify(a.shape) !== JSON.stringify(b.shape)) {
      console.log(`  ${name}: shape ${JSON.stringify(a.shape)} vs ${JSON.stringify(b.shape)}`);
      failed = true;
      continue;
    }
    let m = 0;
    for (let i = 0; i < a.data.length; i++) {
      const d = Math.abs(a.data[i]! - b.data[i]!);
      if (d > m || Number.isNaN(d)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
    }
    values += a.data.length;
    if (m > maxAbs) {
      maxAbs = m;
      maxName = name;
    }
  }
  for (const t of file.tensors) perType.set(t.typeName, (perType.get(t.typeName) ?? 0) + 1);
  const tCompare = performance.now() - t1;
  console.log(
    `${basename(path)}: ${refNames.size} tensors (${values} values; ggml types ${[...perType].map(([k, v]) => `${k}×${v}`).join(', ')})`,
  );
  console.log(`  max |ours − transformers| = ${maxAbs}${maxName ? ` (at ${maxName})` : ''}`);
  console.log(`  parse ${tParse.toFixed(0)} ms; dequantise + compare all ${tCompare.toFixed(0)} ms`);
  console.log(
    `  missing in ours: ${missing.length ? missing.join(', ') : 'none'}; extra: ${extra.length ? extra.join(', ') : 'none'}`,
  );
  console.log(`  config differences: ${configDiffs.length ? `\n    ${configDiffs.join('\n    ')}` : 'none'}`);
  if (maxAbs !== 0 || missing.length || extra.length) failed = true;
}
process.exit(failed ? 1 : 0);
