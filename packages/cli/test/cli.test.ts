import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vulkanDrivers, webgpuUnavailableReason } from '@relp/backend-webgpu-node';
import { fixturePath } from '@relp/testing';
import { XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import type { CliIo } from '../src/io.js';
import { main } from '../src/main.js';

const model = fixturePath('models', 'gpt2-a');
const wordsModel = fixturePath('cli', 'tiny-gpt2-words');
const pairs = fixturePath('cli', 'pairs-ids.jsonl');

async function run(
  args: string[],
  cwd = tmpdir(),
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s), isTTY: false },
    env: { RELP_BACKEND: 'cpu', ...env },
    cwd,
    argv: ['node', 'relp', ...args],
  };
  const code = await main(args, io);
  return { code, out, err };
}

const tmp = () => mkdtempSync(join(tmpdir(), 'relp-cli-'));

/** `relp <command> --model <the test model> --data <data>`, then `extra`. */
const onModel = (command: string, data: string, ...extra: string[]) =>
  run([command, '--model', model, '--data', data, ...extra]);
const attribute = (data: string, method: string, ...extra: string[]) =>
  onModel('attribute', data, '--method', method, ...extra);

describe('relp attribute', () => {
  it('writes result.json with the contract keys and full provenance', async () => {
    const dir = tmp();
    const out = join(dir, 'result.json');
    const r = await attribute(pairs, 'relp', '--sites', 'resid_pre,attn_out,mlp_out,z', '--out', out);
    expect(r.err).not.toMatch(/error/);
    expect(r.code).toBe(0);
    const res = JSON.parse(readFileSync(out, 'utf8'));
    expect(res.method).toBe('relp');
    expect(res.rules).toBe('relp');
    expect(typeof res.metric.clean).toBe('number');
    expect(typeof res.metric.corrupt).toBe('number');
    expect(res.metric.clean).not.toBe(res.metric.corrupt);
    for (const site of ['resid_pre', 'attn_out', 'mlp_out']) {
      expect(res.scores[site]).toHaveLength(2); // layers
      for (const row of res.scores[site]) expect(row).toHaveLength(7); // positions
      // positions before the first difference (4) are exactly 0
      for (const row of res.scores[site]) expect(row.slice(0, 4)).toEqual([0, 0, 0, 0]);
    }
    expect(res.scores.z[0][0]).toHaveLength(4); // heads
    expect(res.cost.forwardPasses).toBe(2);
    expect(res.cost.backwardPasses).toBe(1);
    expect(res.provenance.model.contentHash).toMatch(/^sha256:/);
    expect(res.provenance.model.path).toBe(model);
    expect(res.provenance.backend.name).toBe('cpu');
    expect(res.provenance.command).toContain('relp attribute --model');
    expect(res.provenance.data).toMatchObject({ kind: 'file', used: 4 });
    expect(res.provenance.relpVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('activation patching with --normalize: the first patched position of resid_pre at layer 0 is exactly 1', async () => {
    const r = await attribute(
      pairs,
      'activation-patching',
      '--sites',
      'resid_pre',
      '--normalize',
      '--json',
      '-q',
    );
    expect(r.code).toBe(0);
    const res = JSON.parse(r.out);
    // Patching the whole residual at the only differing position of layer 0 restores the clean run.
    expect(res.scores.resid_pre[0][4]).toBeCloseTo(1, 4);
    expect(res.metric.normalized).toBe(true);
  });
});

describe('relp compare / circuit / demo', () => {
  it('compare writes a report whose HTML shows the table and names every SVG it writes', async () => {
    const dir = join(tmp(), 'report');
    const r = await onModel('compare', pairs, '--methods', 'atp,relp', '--normalize', '--out', dir);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/relp\s+mlp_out\s+-?\d\.\d{3}\s+-?\d\.\d{3}/);
    const files = readdirSync(dir);
    const svgs = files.filter((f) => f.endsWith('.svg'));
    expect(svgs).toHaveLength(9 + 3);
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).toContain('pearson');
    const named = new Set([...html.matchAll(/href="([^"]+\.svg)"/g)].map((m) => m[1]));
    expect(named).toEqual(new Set(svgs));
    for (const f of svgs) expect(XMLValidator.validate(readFileSync(join(dir, f), 'utf8'))).toBe(true);
    const json = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
    expect(json.agreement).toHaveLength(6);
    expect(json.provenance.model.contentHash).toMatch(/^sha256:/);
  });

  it('circuit writes JSON, DOT, SVG and the sweep curves; faithfulness of the whole universe is 1', async () => {
    const dir = join(tmp(), 'circ');
    const r = await onModel(
      'circuit',
      pairs,
      '--methods',
      'atp',
      '--select',
      'top-k',
      '--value',
      '42',
      '--thresholds',
      '1e-3:1:4',
      '--out',
      dir,
    );
    expect(r.code).toBe(0);
    const files = readdirSync(dir).sort();
    expect(files).toEqual(
      [
        'circuit-atp.dot',
        'circuit-atp.json',
        'circuit-atp.svg',
        'circuit.json',
        'completeness.svg',
        'curves.json',
        'faithfulness.svg',
        'report.html',
      ].sort(),
    );
    const c = JSON.parse(readFileSync(join(dir, 'circuit-atp.json'), 'utf8'));
    expect(c.nodes).toHaveLength(42); // 3 sites × 2 layers × 7 positions: everything
    expect(c.evaluation.faithfulness).toBeCloseTo(1, 4);
    expect(c.evaluation.completeness).toBeCloseTo(0, 4);
    const curves = JSON.parse(readFileSync(join(dir, 'curves.json'), 'utf8'));
    expect(curves.curves.atp).toHaveLength(4);
    expect(readFileSync(join(dir, 'circuit-atp.dot'), 'utf8')).toMatch(/^digraph circuit \{/);
    expect(XMLValidator.validate(readFileSync(join(dir, 'circuit-atp.svg'), 'utf8'))).toBe(true);
  });

  it('demo runs the 8 reference IOI prompts end to end (BOS + 14 tokens) and reports accuracy', async () => {
    const dir = join(tmp(), 'demo');
    const r = await run(['demo', '--model', wordsModel, '--no-generated', '--out', dir]);
    expect(r.err).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/reference-8\s+8\s+\d+\.\d\s+-?\d/);
    const demo = JSON.parse(readFileSync(join(dir, 'demo.json'), 'utf8'));
    expect(demo.sets['reference-8'].behaviour.perPrompt).toHaveLength(8);
    const rep = JSON.parse(readFileSync(join(dir, 'reference-8', 'report.json'), 'utf8'));
    expect(rep.tokenLabels).toHaveLength(15);
    expect(rep.methods[0].scores.resid_pre[0]).toHaveLength(15);
    // The top-level report shows the pictures itself (inlined, each linked to its file in the set's folder):
    // the scatters, and the heatmaps as a grid of a row per site and a column per method.
    const top = readFileSync(join(dir, 'report.html'), 'utf8');
    const inlined = [...top.matchAll(/<figure data-file="([^"]+)"[^>]*><svg/g)].map((m) => m[1]!);
    const setSvgs = readdirSync(join(dir, 'reference-8')).filter((f) => f.endsWith('.svg'));
    expect(inlined.sort()).toEqual(setSvgs.map((f) => `reference-8/${f}`).sort());
    const cells = [...top.matchAll(/class="fig-cell" data-row="([^"]+)" data-column="([^"]+)"/g)];
    expect(cells.map((c) => `${c[1]} ${c[2]}`)).toEqual(
      ['resid_pre', 'attn_out', 'mlp_out'].flatMap((s) =>
        ['activation-patching', 'atp', 'relp'].map((m) => `${s} ${m}`),
      ),
    );
    // Seconds are measured after a warm-up, and the table says so.
    expect(top).toMatch(/Cost per method \(seconds: one timed run each, after one untimed warm-up run/);
  });

  it('demo defaults to smollm2-135m, fetched into the cache; unreachable sources give NOT_AVAILABLE', async () => {
    // An empty cache and a hub endpoint on a closed loopback port: the default model cannot be had.
    const r = await run(['demo', '--out', join(tmp(), 'x')], tmpdir(), {
      RELP_CACHE: tmp(),
      RELP_MODEL_SOURCES: 'hub',
      HF_ENDPOINT: 'http://127.0.0.1:9',
    });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/NOT_AVAILABLE/);
    expect(r.err).toMatch(/smollm2-135m/);
  });
});

describe('bad input → exit 2, internal errors → exit 1', () => {
  it('unknown task', async () => {
    const r = await run([
      'attribute',
      '--model',
      model,
      '--task',
      'ioj',
      '--method',
      'atp',
      '--out',
      join(tmp(), 'r.json'),
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown task 'ioj'.*ioi-demo/);
  });

  it('a malformed JSONL line is reported with its line number', async () => {
    const dir = tmp();
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, `${readFileSync(pairs, 'utf8').split('\n')[0]}\n{"clean_ids": [1, 2}\n`);
    const r = await attribute(bad, 'atp', '--out', join(dir, 'r.json'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/bad\.jsonl:2: not valid JSON/);
    expect(existsSync(join(dir, 'r.json'))).toBe(false);
  });

  it('clean == corrupt everywhere, and a prompt longer than the context', async () => {
    const dir = tmp();
    const same = join(dir, 'same.jsonl');
    writeFileSync(
      same,
      '{"clean_ids": [1, 2, 3], "corrupt_ids": [1, 2, 3], "answer_id": 4, "wrong_id": 5}\n',
    );
    const r1 = await attribute(same, 'atp', '--out', join(dir, 'r.json'));
    expect(r1.code).toBe(2);
    expect(r1.err).toMatch(/identical/);
    const long = join(dir, 'long.jsonl');
    const ids = Array.from({ length: 30 }, (_, i) => i + 1);
    writeFileSync(
      long,
      JSON.stringify({ clean_ids: ids, corrupt_ids: [...ids.slice(0, -1), 77], answer_id: 4, wrong_id: 5 }),
    );
    const r2 = await attribute(long, 'atp', '--out', join(dir, 'r.json'));
    expect(r2.code).toBe(2);
    expect(r2.err).toMatch(/longer than the model's context/);
  });

  it('refuses an existing output unless --force, leaving it untouched', async () => {
    const dir = tmp();
    const out = join(dir, 'r.json');
    writeFileSync(out, 'keep');
    const r = await attribute(pairs, 'atp', '--out', out);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/already exists; pass --force/);
    expect(readFileSync(out, 'utf8')).toBe('keep');
    const folder = join(dir, 'rep');
    writeFileSync(join(dir, 'marker'), '');
    const r2 = await onModel('compare', pairs, '--out', dir);
    expect(r2.code).toBe(2);
    expect(existsSync(folder)).toBe(false);
    expect(readdirSync(dir).sort()).toEqual(['marker', 'r.json']); // no temp folders left behind
    const r3 = await attribute(pairs, 'atp', '--out', out, '--force', '-q');
    expect(r3.code).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8')).method).toBe('atp');
  });

  it('bad flags and unknown methods are exit 2; --help is exit 0 with examples', async () => {
    expect((await attribute(pairs, 'foo', '--out', 'x.json')).code).toBe(2);
    expect((await onModel('compare', pairs, '--methods', 'atp,zzz', '--out', join(tmp(), 'c'))).code).toBe(2);
    expect((await run(['attribute', '--frobnicate'])).code).toBe(2);
    expect((await attribute(pairs, 'atp', '--sites', 'resid_pree', '--json')).err).toMatch(
      /unknown site 'resid_pree'/,
    );
    for (const cmd of ['attribute', 'compare', 'circuit', 'demo', 'tasks']) {
      const h = await run([cmd, '--help']);
      expect(h.code).toBe(0);
      expect(h.out).toContain('Examples:');
    }
  });

  it('a setting none of the chosen methods takes is exit 2, before any model is loaded', async () => {
    const missing = join(tmp(), 'no-such-model');
    const on = (command: string, ...extra: string[]) =>
      run([command, '--model', missing, '--data', pairs, ...extra]);
    const a = await on('attribute', '--method', 'atp', '--ig-steps', '3', '--json');
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--ig-steps applies to ig, none of which is among atp/);
    const c = await on('compare', '--methods', 'relp', '--ig-steps', '3');
    expect(c.code).toBe(2);
    expect(c.err).toMatch(/--ig-steps applies to ig, none of which is among activation-patching, relp/);
    // compare always runs activation patching, which takes --max-batch-rows: that reaches the model loader.
    const m = await on('compare', '--methods', 'relp', '--max-batch-rows', '4');
    expect(m.err).not.toMatch(/applies to/);
  });

  it('an unexpected failure is exit 1', async () => {
    const io: CliIo = {
      stdout: {
        write: () => {
          throw new TypeError('disk on fire');
        },
      },
      stderr: { write: () => true, isTTY: false },
      env: {},
      cwd: tmpdir(),
      argv: ['node', 'relp', 'tasks'],
    };
    expect(await main(['tasks'], io)).toBe(1);
  });

  it('every backend the CLI can pick is nameable: --backend native and cpu are accepted, and say so', async () => {
    for (const name of ['native', 'cpu']) {
      const dir = tmp();
      const out = join(dir, 'result.json');
      const r = await attribute(pairs, 'atp', '--backend', name, '--out', out);
      expect(r.err).not.toMatch(/invalid/);
      expect(r.code).toBe(0);
      expect(JSON.parse(readFileSync(out, 'utf8')).provenance.backend.name).toBe(name);
    }
  });

  it.skipIf(webgpuUnavailableReason(process.env) !== undefined)(
    '--backend webgpu runs on WebGPU in Node (SwiftShader without a GPU), names its adapter, and scores as cpu does',
    async () => {
      const scores: number[][] = [];
      for (const name of ['webgpu', 'cpu']) {
        const out = join(tmp(), 'result.json');
        const r = await attribute(
          pairs,
          'relp',
          '--backend',
          name,
          '--sites',
          'resid_pre,attn_out',
          '--out',
          out,
        );
        expect(r.code, r.err).toBe(0);
        const res = JSON.parse(readFileSync(out, 'utf8'));
        expect(res.provenance.backend.name).toBe(name);
        if (name === 'webgpu') expect(r.err).toMatch(/WebGPU in Node \(Dawn\), adapter .+/);
        scores.push(
          JSON.stringify(res.scores)
            .match(/-?\d+(\.\d+)?(e-?\d+)?/g)!
            .map(Number),
        );
      }
      const [gpu, cpu] = scores as [number[], number[]];
      expect(gpu.length).toBe(cpu.length);
      const scale = Math.max(...cpu.map(Math.abs));
      expect(Math.max(...gpu.map((x, i) => Math.abs(x - cpu[i]!))) / scale).toBeLessThanOrEqual(1e-4);
    },
  );

  it.skipIf(vulkanDrivers(process.env).some((d) => !d.software))(
    'automatic choice skips a software WebGPU adapter and says why',
    async () => {
      const r = await run(
        ['attribute', '--model', model, '--data', pairs, '--method', 'atp', '--json'],
        tmpdir(),
        {
          RELP_BACKEND: '',
        },
      );
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(/skipped webgpu: .*(no hardware GPU driver|software)/);
    },
  );
});

describe('numeric options are checked when the command starts', () => {
  const cases: [string, string[], RegExp][] = [
    ['attribute', ['--method', 'atp', '--max-batch-rows', '0'], /--max-batch-rows must be an integer from 1/],
    ['attribute', ['--method', 'ig', '--ig-steps', '1e8'], /--ig-steps must be an integer from 1 to 10000/],
    [
      'attribute',
      ['--method', 'atp', '--task', 'ioi', '--n', '1e9'],
      /--n must be an integer from 1 to 100000/,
    ],
    ['attribute', ['--method', 'atp', '--seed', '-1'], /--seed must be an integer/],
    ['compare', ['--methods', 'atp', '--top-k', '0'], /--top-k must be an integer from 1/],
    ['circuit', ['--thresholds', '1e-4:1:1e8'], /at most 1000 steps/],
    ['circuit', ['--select', 'top-k', '--value', '-5'], /--value with --select top-k .* integer ≥ 1/],
    ['circuit', ['--select', 'top-k', '--value', '2.5'], /integer ≥ 1/],
    ['circuit', ['--value', '-0.1'], /threshold on \|score\|, so it must be ≥ 0/],
    ['demo', ['--n', '0'], /--n must be an integer from 1/],
  ];
  for (const [command, extra, message] of cases) {
    it(`relp ${command} ${extra.join(' ')}: exit 2 before loading the model`, async () => {
      const t0 = performance.now();
      const r = await run([
        command,
        '--model',
        '/nonexistent/model',
        '--data',
        pairs,
        ...extra,
        '--out',
        join(tmp(), 'o'),
      ]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(message);
      expect(r.err, 'refused before the model was looked up').not.toMatch(/nonexistent/);
      expect(performance.now() - t0).toBeLessThan(5000);
    });
  }
});

describe('the output target is checked before the run', () => {
  const refused = async (command: string, extra: string[], out: string, message: RegExp) => {
    const args =
      command === 'attribute'
        ? ['--method', 'atp', ...extra]
        : command === 'compare'
          ? ['--methods', 'atp', ...extra]
          : extra;
    const r = await run([command, '--model', '/nonexistent/model', '--data', pairs, ...args, '--out', out]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err, 'refused before the model was looked up').not.toMatch(/nonexistent/);
  };

  it('an existing output without --force', async () => {
    const dir = tmp();
    await refused('compare', [], dir, /already exists; pass --force/);
  });
  it('a path under a regular file', async () => {
    const file = join(tmp(), 'plain');
    writeFileSync(file, 'x');
    await refused('attribute', [], join(file, 'sub', 'result.json'), /is a file, not a folder/);
    await refused('compare', [], join(file, 'out'), /is a file, not a folder/);
  });
  it('a folder where a file is wanted, and a file where a folder is wanted (with --force)', async () => {
    await refused('attribute', ['--force'], tmp(), /exists and is a folder/);
    const file = join(tmp(), 'plain');
    writeFileSync(file, 'x');
    await refused('circuit', ['--force'], file, /exists and is not a folder/);
  });
  it('a place this process cannot write in (immutable folder)', async (ctx) => {
    const dir = tmp();
    const chattr = spawnSync('chattr', ['+i', dir]);
    if (chattr.status !== 0) {
      console.log('skipped: chattr +i is not available here');
      ctx.skip();
    }
    try {
      await refused('compare', [], join(dir, 'out'), /no permission to write/);
    } finally {
      spawnSync('chattr', ['-i', dir]);
    }
  });
});
