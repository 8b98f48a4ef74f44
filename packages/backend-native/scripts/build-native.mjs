// Builds the native addon with node-gyp. Never fails the install or CI: when the addon cannot build (no C++
// compiler, no OpenBLAS headers, no node-gyp), it records why in build/native-status.json, which the
// backend's probe() reports, and exits 0. Pass --strict to exit non-zero on failure.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict');
const statusFile = join(root, 'build', 'native-status.json');

function finish(ok, reason, log = '') {
  mkdirSync(join(root, 'build'), { recursive: true });
  writeFileSync(
    statusFile,
    `${JSON.stringify({ ok, reason, when: new Date().toISOString(), log: log.slice(-4000) }, null, 2)}\n`,
  );
  console.log(ok ? `relp native backend: built (${reason})` : `relp native backend: NOT built: ${reason}`);
  process.exit(!ok && strict ? 1 : 0);
}

if (process.env.RELP_SKIP_NATIVE === '1') finish(false, 'skipped (RELP_SKIP_NATIVE=1)');

// Up to date (this runs on every `pnpm install`): the addon is newer than its sources and was built for
// this Node's ABI. --force rebuilds.
const addon = join(root, 'native', 'build', 'Release', 'relp_native.node');
const abiFile = join(root, 'native', 'build', 'node-abi.txt');
if (!process.argv.includes('--force') && existsSync(addon) && existsSync(abiFile)) {
  const built = statSync(addon).mtimeMs;
  const sources = ['relp_native.cc', 'binding.gyp'].map((f) => statSync(join(root, 'native', f)).mtimeMs);
  if (sources.every((t) => t < built) && readFileSync(abiFile, 'utf8').trim() === process.versions.modules) {
    console.log('relp native backend: up to date');
    process.exit(0);
  }
}
if (process.platform === 'win32')
  finish(false, 'Windows builds are not set up (binding.gyp links -lopenblas)');

const cblasHeaders = [
  '/usr/include/x86_64-linux-gnu/cblas.h',
  '/usr/include/cblas.h',
  '/usr/include/openblas/cblas.h',
  '/usr/include/aarch64-linux-gnu/cblas.h',
];
if (!cblasHeaders.some((p) => existsSync(p))) {
  finish(false, 'no cblas.h found: install OpenBLAS (Debian/Ubuntu: apt-get install -y libopenblas-dev)');
}

let gypScript;
try {
  gypScript = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
} catch {
  // npm ships node-gyp; use it when the package's own copy is missing.
  const bundled = resolve(
    dirname(process.execPath),
    '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
  );
  if (existsSync(bundled)) gypScript = bundled;
}
if (!gypScript) finish(false, 'node-gyp not found (pnpm install should provide it)');

const args = [gypScript, 'rebuild', '--release', '--directory=native'];
// Use the running Node's own headers when they are installed next to it (no download needed).
const prefix = resolve(dirname(process.execPath), '..');
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const r = spawnSync(process.execPath, args, {
  cwd: root,
  encoding: 'utf8',
  env: { ...process.env, JOBS: 'max' },
});
const log = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
if (r.status !== 0 || !existsSync(join(root, 'native', 'build', 'Release', 'relp_native.node'))) {
  const line =
    log.split('\n').find((l) => /error|not found|No such file/i.test(l)) ??
    `node-gyp exited with ${r.status}`;
  finish(false, `compile failed: ${line.trim()}`, log);
}
writeFileSync(abiFile, `${process.versions.modules}\n`);
finish(true, 'native/build/Release/relp_native.node', log);
