/**
 * The quick start's "In your own project" instruction works: the packages are built, packed with `pnpm pack`
 * (which turns workspace:* into version numbers) and installed with npm into a project outside the repository,
 * where Node imports them from their built dist/ (the "default" export condition). Offline: tfjs-core is the
 * workspace's own copy.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const app = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(app, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'relp-install-'));

describe('installing the packages into another project', () => {
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('builds, packs and installs @relp/core and @relp/lrp-rules, which import and run', () => {
    const tarballs = join(work, 'relp-tarballs');
    for (const p of ['core', 'lrp-rules']) {
      const dir = join(repo, 'packages', p);
      execFileSync('pnpm', ['run', 'build'], { cwd: dir, stdio: 'inherit' });
      execFileSync('pnpm', ['pack', '--pack-destination', tarballs], { cwd: dir, stdio: 'pipe' });
    }
    const files = readdirSync(tarballs).map((f) => join(tarballs, f));
    expect(files.map((f) => f.slice(tarballs.length + 1)).sort()).toEqual([
      'relp-core-0.1.0.tgz',
      'relp-lrp-rules-0.1.0.tgz',
    ]);
    const project = join(work, 'project');
    execFileSync('mkdir', ['-p', project]);
    writeFileSync(
      join(project, 'package.json'),
      '{ "name": "outside", "private": true, "type": "module" }\n',
    );
    const tfjs = realpathSync(join(app, 'node_modules', '@tensorflow', 'tfjs-core'));
    execFileSync(
      'npm',
      ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', ...files, `file:${tfjs}`],
      { cwd: project, stdio: 'inherit' },
    );
    writeFileSync(
      join(project, 'main.js'),
      [
        "import * as tf from '@tensorflow/tfjs-core';",
        "import { RelpError, SITES } from '@relp/core';",
        "import { presetByName } from '@relp/lrp-rules';",
        "const e = new RelpError('BAD_INPUT', 'x');",
        'console.log(JSON.stringify({ code: e.code, sites: Object.keys(SITES).length, preset: typeof presetByName("relp"), tf: tf.version_core }));',
      ].join('\n'),
    );
    const out = JSON.parse(execFileSync('node', ['main.js'], { cwd: project, encoding: 'utf8' }));
    expect(out).toEqual({ code: 'BAD_INPUT', sites: expect.any(Number), preset: 'object', tf: '4.22.0' });
    expect(out.sites).toBeGreaterThan(10);
  });
});
