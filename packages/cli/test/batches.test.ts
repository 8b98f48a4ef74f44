import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fixturePath } from '@relp/testing';
import { describe, expect, it } from 'vitest';
import { KILL_AFTER_ENV } from '../src/batched.js';
import type { CliIo } from '../src/io.js';
import { main } from '../src/main.js';

const model = fixturePath('cli', 'tiny-gpt2-words');
const repo = resolve(import.meta.dirname, '../../..');

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s), isTTY: false },
    env: { RELP_BACKEND: 'cpu' },
    cwd: tmpdir(),
    argv: ['node', 'relp', ...args],
  };
  const code = await main(args, io);
  return { code, out, err };
}

/** A small pairs file: ids < 26, prompts of 4 … 9 tokens (so batches pad differently), one unusable pair. */
function pairsFile(dir: string, n = 10, seed = 1): string {
  let state = seed;
  const rnd = (k: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % k;
  };
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = 4 + rnd(6);
    const clean = Array.from({ length: len }, () => rnd(26));
    const corrupt = [...clean];
    const at = 1 + rnd(len - 1);
    corrupt[at] = (clean[at]! + 1 + rnd(25)) % 26;
    const answer = rnd(26);
    lines.push(
      JSON.stringify({
        clean_ids: clean,
        corrupt_ids: corrupt,
        answer_id: answer,
        wrong_id: (answer + 3) % 26,
      }),
    );
    if (i === 6)
      lines.push(JSON.stringify({ clean_ids: clean, corrupt_ids: clean, answer_id: 1, wrong_id: 2 }));
  }
  const path = join(dir, 'pairs.jsonl');
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

const tmp = () => mkdtempSync(join(tmpdir(), 'relp-batches-'));
const read = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

/** A result without what differs between runs of the same computation (times, command lines, dates). */
function comparable(r: Record<string, unknown>): Record<string, unknown> {
  const { provenance: _p, cost, ...rest } = r as { provenance: unknown; cost: Record<string, number> };
  const { seconds: _s, peakTensorBytes: _m, ...counts } = cost;
  return { ...rest, cost: counts };
}

const attribute = (data: string, out: string, ...extra: string[]) =>
  run([
    'attribute',
    '--model',
    model,
    '--data',
    data,
    '--method',
    'relp',
    '--normalize',
    '-q',
    '--out',
    out,
    ...extra,
  ]);

describe('batched runs', () => {
  it('scores in batches equal one batch over all pairs (to float32 rounding); padding scores nothing', async () => {
    const dir = tmp();
    const data = pairsFile(dir);
    const one = await attribute(data, join(dir, 'one.json'), '--batch-size', '100');
    const three = await attribute(data, join(dir, 'three.json'), '--batch-size', '3');
    expect(one.err).toBe(
      'warning: dropped 1 of 11 pairs: 1 clean and corrupt are identical (of this run; listed in the result)\n',
    );
    expect(three.code).toBe(0);
    const a = read(join(dir, 'one.json'));
    const b = read(join(dir, 'three.json'));
    expect(b.batchSize).toBe(10);
    expect(b.dropped).toHaveLength(1);
    expect(b.dropped[0]).toMatchObject({ index: 7, line: 8, reason: 'identical' });
    expect(b.provenance.data).toMatchObject({ used: 10, dropped: 1, batchSize: 3, batches: 4 });
    expect([b.seqLen, b.firstDiff]).toEqual([a.seqLen, a.firstDiff]);
    expect(b.metric.clean).toBeCloseTo(a.metric.clean, 5);
    expect(b.metric.corrupt).toBeCloseTo(a.metric.corrupt, 5);
    for (const site of ['resid_pre', 'attn_out', 'mlp_out']) {
      const x = (a.scores[site] as number[][]).flat();
      const y = (b.scores[site] as number[][]).flat();
      expect(y).toHaveLength(x.length);
      const scale = Math.max(...x.map(Math.abs));
      for (const [i, v] of y.entries()) expect(Math.abs(v - x[i]!)).toBeLessThan(1e-5 * scale);
    }
    // four batches: each method pass once per batch
    expect(b.cost.forwardPasses).toBe(4 * a.cost.forwardPasses);
    expect(existsSync(join(dir, 'three.json.partial.json'))).toBe(false);
  });

  it('shards merged equal the unsplit run exactly (exact float64 sums), with the shards in the provenance', async () => {
    const dir = tmp();
    const data = pairsFile(dir, 15, 7);
    const whole = await attribute(data, join(dir, 'whole.json'), '--batch-size', '1');
    expect(whole.code).toBe(0);
    const parts: string[] = [];
    for (const i of [2, 0, 1]) {
      const p = join(dir, `part-${i}.json`);
      const r = await attribute(data, p, '--batch-size', '1', '--shard', `${i}/3`);
      expect(r.code, r.err).toBe(0);
      parts.push(p);
    }
    const m = await run(['merge', ...parts, '--out', join(dir, 'merged.json'), '-q']);
    expect(m.code, m.err).toBe(0);
    const a = read(join(dir, 'whole.json'));
    const b = read(join(dir, 'merged.json'));
    expect(comparable(b)).toEqual(comparable(a));
    expect(b.provenance.shards.map((s: { shard: string }) => s.shard)).toEqual(['0/3', '1/3', '2/3']);
    expect(b.provenance.command).toMatch(/^relp merge /);
    expect(b.provenance.data).toEqual(a.provenance.data);
  });

  it('relp merge refuses partials that do not make one run (exit 2, the reason named)', async () => {
    const dir = tmp();
    const data = pairsFile(dir, 8, 3);
    const other = join(dir, 'other.jsonl');
    writeFileSync(other, readFileSync(data, 'utf8').split('\n').slice(1).join('\n'));
    const part = async (name: string, ...extra: string[]) => {
      const p = join(dir, name);
      const r = await run([
        'attribute',
        '--model',
        model,
        '--method',
        'relp',
        '--normalize',
        '-q',
        '--batch-size',
        '2',
        '--out',
        p,
        ...(extra.includes('--data') ? [] : ['--data', data]),
        ...extra,
      ]);
      expect(r.code, r.err).toBe(0);
      return p;
    };
    const p0 = await part('p0.json', '--shard', '0/2');
    const p1 = await part('p1.json', '--shard', '1/2');
    const atp = await part('atp.json', '--shard', '1/2', '--method', 'atp');
    const otherData = await part('od.json', '--shard', '1/2', '--data', other);
    const of3 = await part('of3.json', '--shard', '1/3');
    const raw = await part('raw.json', '--shard', '1/2', '--batch-size', '3');
    const refused = async (paths: string[], reason: RegExp) => {
      const r = await run(['merge', ...paths, '--out', join(dir, 'm.json')]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(reason);
      expect(existsSync(join(dir, 'm.json'))).toBe(false);
    };
    await refused([p0, atp], /methods differ \(different-methods\)/);
    await refused([p0, otherData], /data differ \(different-data\)/);
    await refused([p0, raw], /batchSize differ \(different-settings\)/);
    await refused([p0, of3], /a run's shards share one n/);
    await refused([p0, p0], /both shard 0\/2/);
    await refused([p0], /missing shard 1\/2 of 2/);
    writeFileSync(join(dir, 'result.json'), '{"method": "relp"}');
    await refused([p0, join(dir, 'result.json')], /not a partial result of relp/);
    // an unfinished shard: the checkpoint of a run stopped after its first batch
    const ck = read(p1);
    ck.batches.next = ck.batches.first + 1;
    writeFileSync(join(dir, 'ck.json'), JSON.stringify(ck));
    await refused([p0, join(dir, 'ck.json')], /unfinished: 1 of 3 batches/);
    const ok = await run(['merge', p0, p1, '--out', join(dir, 'm.json'), '-q']);
    expect(ok.code, ok.err).toBe(0);
  });

  it('a terminal shows one progress bar of pairs, with counts and time left', async () => {
    const dir = tmp();
    const data = pairsFile(dir, 5, 4);
    let err = '';
    const stderr = {
      write: (x: string) => {
        err += x;
        return true;
      },
      isTTY: true,
      columns: 120,
      cursorTo: () => true,
      clearLine: () => true,
      moveCursor: () => true,
      on: () => stderr,
      removeListener: () => stderr,
    };
    const args = [
      'attribute',
      '--model',
      model,
      '--data',
      data,
      '--method',
      'atp',
      '--batch-size',
      '2',
      '--json',
    ];
    const code = await main(args, {
      stdout: { write: () => true },
      stderr,
      env: { RELP_BACKEND: 'cpu' },
      cwd: tmpdir(),
      argv: ['node', 'relp', ...args],
    });
    expect(code).toBe(0);
    expect(err).toMatch(/pairs\s+\[[^\]]*\] 5\/5 \| ETA/);
    // one bar: every redraw is of the pairs bar (the engine's per-method bars stay off in batched runs)
    const bars = err
      .split(`${String.fromCharCode(27)}[1G`)
      .slice(1)
      .map((x) => x.split(/\s/)[0]);
    expect(bars.length).toBeGreaterThan(1);
    expect(new Set(bars)).toEqual(new Set(['pairs']));
  });

  it('--shard and --batch-size out of range: exit 2 before the model loads', async () => {
    for (const args of [
      ['--shard', '3/3', '--out', 'x.json'],
      ['--shard', 'a/b', '--out', 'x.json'],
      ['--shard', '0/2', '--json'],
      ['--batch-size', '0', '--json'],
    ]) {
      const r = await run([
        'attribute',
        '--model',
        '/nonexistent',
        '--data',
        'x',
        '--method',
        'atp',
        ...args,
      ]);
      expect(r.code).toBe(2);
      expect(r.err).not.toMatch(/nonexistent/);
    }
  });

  it('relp compare scores in batches and agrees with itself in one batch', async () => {
    const dir = tmp();
    const data = pairsFile(dir, 6, 5);
    const cmp = (out: string, size: string) =>
      run([
        'compare',
        '--model',
        model,
        '--data',
        data,
        '--methods',
        'atp,relp',
        '-q',
        '--json',
        '--batch-size',
        size,
        '--out',
        join(dir, out),
      ]);
    const a = await cmp('one', '100');
    const b = await cmp('two', '2');
    expect(b.code, b.err).toBe(0);
    const ja = JSON.parse(a.out);
    const jb = JSON.parse(b.out);
    expect(jb.agreement).toHaveLength(ja.agreement.length);
    for (const [i, row] of (jb.agreement as { pearson: number }[]).entries()) {
      expect(row.pearson).toBeCloseTo(ja.agreement[i].pearson, 4);
    }
    expect(jb.metric.clean).toBeCloseTo(ja.metric.clean, 5);
    expect(existsSync(join(dir, 'two', 'report.html'))).toBe(true);
  });
});

/** `relp …` in a child process (a kill must not take the test runner with it). */
function relpProcess(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; err: string }>((done) => {
    const child = spawn(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', 'packages/cli/src/bin.ts', ...args],
      { cwd: repo, env: { ...process.env, RELP_BACKEND: 'cpu', RELP_NO_PROGRESS: '1', ...env } },
    );
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code, signal) => done({ code, signal, err }));
  });
}

describe('an interrupted run resumes', () => {
  it('killed after 2 of 5 batches, the rerun goes on from its checkpoint and writes the uninterrupted result', async () => {
    const dir = tmp();
    const data = pairsFile(dir, 9, 11);
    const args = (out: string) => [
      'attribute',
      '--model',
      model,
      '--data',
      data,
      '--method',
      'relp',
      '--sites',
      'resid_pre,z',
      '--batch-size',
      '2',
      '--out',
      out,
    ];
    const straight = await run(args(join(dir, 'straight.json')).concat('-q'));
    expect(straight.code).toBe(0);
    const out = join(dir, 'r.json');
    const killed = await relpProcess(args(out), { [KILL_AFTER_ENV]: '2' });
    expect(killed.signal).toBe('SIGKILL');
    expect(existsSync(out)).toBe(false);
    const ck = read(`${out}.partial.json`);
    expect(ck.batches).toEqual({ first: 0, end: 5, next: 2 });
    // the checkpoint belongs to this run: another one with the same output is refused, not mixed in
    const other = await run([...args(out), '--method', 'atp']);
    expect(other.code).toBe(2);
    expect(other.err).toMatch(/checkpoint .* is from another run \(its methods differs/);
    const resumed = await run(args(out));
    expect(resumed.code, resumed.err).toBe(0);
    expect(resumed.err).toMatch(/resuming from .*: 2 of 5 batches done/);
    expect(existsSync(`${out}.partial.json`)).toBe(false);
    expect(comparable(read(out))).toEqual(comparable(read(join(dir, 'straight.json'))));
  });

  it('--no-resume starts over', async () => {
    const dir = tmp();
    const data = pairsFile(dir, 4, 2);
    const out = join(dir, 'r.json');
    writeFileSync(`${out}.partial.json`, '{"format": "something else"}');
    const refused = await run([
      'attribute',
      '--model',
      model,
      '--data',
      data,
      '--method',
      'atp',
      '--out',
      out,
    ]);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/checkpoint .* cannot be resumed .*pass --no-resume to start over/);
    const r = await run([
      'attribute',
      '--model',
      model,
      '--data',
      data,
      '--method',
      'atp',
      '--out',
      out,
      '--no-resume',
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).not.toMatch(/resuming/);
    expect(existsSync(`${out}.partial.json`)).toBe(false);
  });
});
