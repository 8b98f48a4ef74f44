import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  attributeEdges,
  checkRulesCover,
  edgeName,
  greedyEdges,
  makePairBatch,
  pruneEdges,
  topEdges,
} from '@relp/core';
import { RELP } from '@relp/lrp-rules';
import { edgeMethodOptions } from '@relp/methods';
import { fixturePath } from '@relp/testing';
import { XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import type { CliIo } from '../src/io.js';
import { main } from '../src/main.js';
import { loadForCli } from '../src/model.js';

/** gpt2-a: 2 layers × 4 heads, so 11 writers, 27 readers and 110 edges; 4 pairs of 7 tokens. */
const model = fixturePath('models', 'gpt2-a');
const pairs = fixturePath('cli', 'pairs-ids.jsonl');
const EDGES = 110;

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

const tmp = () => mkdtempSync(join(tmpdir(), 'relp-edges-'));
const edges = (...extra: string[]) => run(['edges', '--model', model, '--data', pairs, ...extra]);
const read = (dir: string, file: string) => JSON.parse(readFileSync(join(dir, file), 'utf8'));

/** The pairs of pairs-ids.jsonl as the engine takes them. */
function batchOf(dims: Parameters<typeof makePairBatch>[1]['dims']) {
  const records = readFileSync(pairs, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
  return makePairBatch(
    records.map((r) => ({
      clean: r.clean_ids,
      corrupt: r.corrupt_ids,
      answer: r.answer_id,
      wrong: r.wrong_id,
    })),
    { dims },
  );
}

describe('relp edges', () => {
  it('writes edges.json (EAP-IG layout per method) and the report; agreement with a patched sample', async () => {
    const dir = join(tmp(), 'out');
    const r = await edges(
      '--methods',
      'eap,relp,eap-ig-inputs',
      '--ig-steps',
      '2',
      '--patch-sample',
      '20',
      '--patch-top',
      '5',
      '--out',
      dir,
      '--json',
      '-q',
    );
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const stdout = JSON.parse(r.out);
    expect(stdout.edges).toBe(EDGES);
    expect(stdout.agreement.map((a: { method: string }) => a.method)).toEqual([
      'eap',
      'relp',
      'eap-ig-inputs',
    ]);
    for (const a of stdout.agreement) {
      expect(a.pearson).toBeGreaterThanOrEqual(-1);
      expect(a.pearson).toBeLessThanOrEqual(1);
      expect(Number.isFinite(a.spearman)).toBe(true);
    }

    const json = read(dir, 'edges.json');
    expect(Object.keys(json.methods)).toEqual(['eap', 'relp', 'eap-ig-inputs']);
    for (const g of Object.values(json.methods) as {
      cfg: Record<string, unknown>;
      nodes: Record<string, unknown>;
      edges: Record<string, { score: number; in_graph: boolean }>;
    }[]) {
      expect(g.cfg).toEqual({
        n_layers: 2,
        n_heads: 4,
        n_key_value_heads: 4,
        parallel_attn_mlp: false,
        d_model: 32,
      });
      expect(Object.keys(g.edges)).toHaveLength(EDGES);
      expect(Object.keys(g.nodes)).toHaveLength(12);
      expect(Object.values(g.edges).every((e) => typeof e.score === 'number')).toBe(true);
    }
    // The sample: at least 20 edges, and every method's top 5 by |score| among them.
    const sample = Object.keys(json.reference.edges);
    expect(sample.length).toBeGreaterThanOrEqual(20);
    expect(sample.length).toBeLessThanOrEqual(20 + 3 * 5);
    for (const m of Object.values(json.methods) as { edges: Record<string, { score: number }> }[]) {
      const top = Object.entries(m.edges)
        .sort((a, b) => Math.abs(b[1].score) - Math.abs(a[1].score))
        .slice(0, 5)
        .map(([e]) => e);
      for (const e of top) expect(sample).toContain(e);
    }

    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).toContain('id="edge-table"');
    expect(html).toContain('<script>');
    // No --circuit: no curves, no circuits.
    expect(existsSync(join(dir, 'faithfulness-corrupt.svg'))).toBe(false);
    expect(existsSync(join(dir, 'circuit-eap.json'))).toBe(false);
  }, 30_000);

  it('--circuit: curves of every method under both ablations, the circuit as JSON (EAP-IG layout), DOT and SVG', async () => {
    const dir = join(tmp(), 'out');
    const r = await edges('--methods', 'eap,relp', '--circuit', '--circuit-edges', '15', '--out', dir, '-q');
    expect(r.code).toBe(0);
    const report = read(dir, 'report.json');
    expect(report.curves).toHaveLength(2 * 2);
    expect(
      report.curves.map((c: { method: string; ablation: string }) => `${c.method}/${c.ablation}`),
    ).toEqual(['eap/corrupt', 'eap/mean', 'relp/corrupt', 'relp/mean']);
    for (const c of report.curves) {
      expect(c.fractions).toEqual([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]);
      // Every edge kept: the clean run itself.
      expect(c.faithfulness.at(-1)).toBeCloseTo(1, 5);
      expect(Number.isFinite(c.cpr) && Number.isFinite(c.cmd)).toBe(true);
    }
    for (const m of ['eap', 'relp']) {
      const circuit = read(dir, `circuit-${m}.json`);
      const kept = Object.entries(circuit.edges as Record<string, { in_graph: boolean }>).filter(
        ([, e]) => e.in_graph,
      );
      expect(kept.length).toBeGreaterThan(0);
      expect(kept.length).toBeLessThanOrEqual(15);
      expect(circuit.nodes.logits.in_graph).toBe(true);
      const dot = readFileSync(join(dir, `circuit-${m}.dot`), 'utf8');
      expect(dot).toMatch(/^digraph edge_circuit \{/);
      expect(dot.match(/ -> /g)).toHaveLength(kept.length);
      const svg = readFileSync(join(dir, `circuit-${m}.svg`), 'utf8');
      expect(XMLValidator.validate(svg)).toBe(true);
    }
    for (const f of ['faithfulness-corrupt.svg', 'faithfulness-mean.svg']) {
      expect(XMLValidator.validate(readFileSync(join(dir, f), 'utf8'))).toBe(true);
    }
    expect(readFileSync(join(dir, 'report.html'), 'utf8')).toContain('CPR ↑');
  }, 30_000);

  it('--select greedy exports the pruned circuit greedyEdges grows from the logits, as core gives it', async () => {
    const dir = join(tmp(), 'out');
    const flags = ['--circuit', '--select', 'greedy', '--ablation', 'corrupt', '--circuit-edges', '12'];
    const r = await edges('--methods', 'eap', ...flags, '--out', dir, '-q');
    expect(r.code, r.err).toBe(0);
    const written = read(dir, 'circuit-eap.json').edges as Record<string, { in_graph: boolean }>;
    const kept = Object.keys(written).filter((e) => written[e]!.in_graph);
    const loaded = await loadForCli(model, {});
    const direct = await attributeEdges(
      loaded.model,
      batchOf(loaded.model.dims),
      edgeMethodOptions('eap', {}),
    );
    const greedy = pruneEdges(greedyEdges(direct, 12));
    const want = greedy.edges.map(([u, v]) => edgeName(greedy.graph, u, v));
    expect(kept.sort()).toEqual([...want].sort());
    // Top-n picks another circuit here: the test tells the two selections apart.
    const top = pruneEdges(topEdges(direct, 12)).edges.map(([u, v]) => edgeName(greedy.graph, u, v));
    expect([...top].sort()).not.toEqual([...want].sort());
  }, 60_000);

  it('edges.json round-trips: its scores are attributeEdges’ called directly on the same model and pairs', async () => {
    const dir = join(tmp(), 'out');
    const r = await edges('--methods', 'eap,relp,eap-ig-activations', '--ig-steps', '2', '--out', dir, '-q');
    expect(r.code).toBe(0);
    const json = read(dir, 'edges.json');
    const loaded = await loadForCli(model, {});
    const batch = batchOf(loaded.model.dims);
    for (const name of ['eap', 'relp', 'eap-ig-activations']) {
      const direct = await attributeEdges(loaded.model, batch, edgeMethodOptions(name, { steps: 2 }));
      const written = json.methods[name].edges as Record<string, { score: number }>;
      expect(Object.keys(written)).toEqual(direct.edges);
      expect(direct.edges.map((e) => written[e]!.score)).toEqual(direct.scores);
    }
  }, 60_000);

  it('--positions each: per-position scores beside the JSON layout, which holds their sums', async () => {
    const dir = join(tmp(), 'out');
    const r = await edges('--methods', 'eap', '--positions', 'each', '--out', dir, '-q');
    expect(r.code).toBe(0);
    const json = read(dir, 'edges.json');
    const perPosition = json.positionScores.eap as Record<string, number[]>;
    expect(Object.keys(perPosition)).toHaveLength(EDGES);
    for (const [e, row] of Object.entries(perPosition)) {
      expect(row).toHaveLength(7);
      expect(row.slice(0, 4)).toEqual([0, 0, 0, 0]); // before the first difference
      expect(json.methods.eap.edges[e].score).toBeCloseTo(
        row.reduce((a, b) => a + b, 0),
        12,
      );
    }
  }, 30_000);

  it('draws progress bars with counts on a terminal: the method, edge patching, the circuit curves', async () => {
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
      'edges',
      '--model',
      model,
      '--data',
      pairs,
      '--methods',
      'eap-ig-inputs',
      '--ig-steps',
      '2',
    ];
    const more = ['--patch-sample', '5', '--circuit', '--ablation', 'corrupt', '--out', join(tmp(), 'out')];
    const io: CliIo = {
      stdout: { write: () => true },
      stderr,
      env: { RELP_BACKEND: 'cpu' },
      cwd: tmpdir(),
      argv: ['node', 'relp', ...args, ...more],
    };
    expect(await main([...args, ...more], io)).toBe(0);
    for (const phase of ['eap-ig-inputs: ', 'edge-patching: ', 'edge circuits']) {
      expect(err).toMatch(new RegExp(`${phase}[^\\n]*\\] \\d+/\\d+`));
    }
    expect(err).toMatch(/edge circuits[^\n]*\] 1\/1/);
  }, 30_000);

  it('--help names the methods and gives examples', async () => {
    const h = await run(['edges', '--help']);
    expect(h.code).toBe(0);
    expect(h.out).toContain('eap, relp, relp-ah, eap-ig-inputs, eap-ig-activations');
    expect(h.out).toContain('Examples:');
  });

  describe('bad input exits 2 before any work', () => {
    const cases: [string, string[], RegExp][] = [
      ['an unknown method', ['--methods', 'eap,nope'], /unknown edge method 'nope'/],
      ['edge patching named as a method', ['--methods', 'edge-patching'], /--patch-sample/],
      ['a method twice', ['--methods', 'eap,eap'], /twice/],
      ['--patch-sample 0', ['--patch-sample', '0'], /--patch-sample must be an integer from 1/],
      ['--ig-steps without EAP-IG', ['--methods', 'eap,relp', '--ig-steps', '3'], /--ig-steps applies/],
      ['--max-batch-rows with nothing it bounds', ['--max-batch-rows', '8'], /--max-batch-rows bounds/],
      ['--ablation without --circuit', ['--ablation', 'mean'], /add --circuit/],
      ['an unknown position mode', ['--positions', 'some'], /--positions/],
    ];
    for (const [what, flags, message] of cases) {
      it(what, async () => {
        const dir = join(tmp(), 'out');
        const r = await edges(...flags, '--out', dir);
        expect(r.code).toBe(2);
        expect(r.err).toMatch(message);
        expect(r.err).not.toMatch(/backend:/); // nothing loaded
        expect(existsSync(dir)).toBe(false);
      });
    }

    it('LRP rules that do not cover the model (soft-capped Gemma 3): refused before the first method runs', async () => {
      const gemma = fixturePath('models', 'gemma3-a');
      const folder = tmp();
      const data = join(folder, 'pairs.jsonl');
      writeFileSync(
        data,
        `${JSON.stringify({ clean_ids: [5, 17, 3, 22, 17], corrupt_ids: [5, 17, 3, 22, 22], answer_id: 22, wrong_id: 17 })}\n`,
      );
      const dir = join(folder, 'out');
      const r = await run(['edges', '--model', gemma, '--data', data, '--methods', 'eap,relp', '--out', dir]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/error \[MISSING_RULE\]: rule set 'relp'/);
      expect(r.err).not.toMatch(/forward/); // eap, listed first, did not run either
      expect(existsSync(dir)).toBe(false);
      const loaded = await loadForCli(gemma, {});
      // The case's precondition, checked after the run (which chose the backend): RelP's rules lack the final
      // soft-cap; a rule added for it makes this case moot.
      expect(() => checkRulesCover(RELP, loaded.model.nonlinearities, loaded.model.architecture)).toThrow(
        /final_logit_softcap/,
      );
    });

    it('a graph too big for --max-memory: refused after loading, before the first pass', async () => {
      const dir = join(tmp(), 'out');
      const r = await edges('--methods', 'eap-ig-activations,eap', '--max-memory', '1', '--out', dir);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(
        /error \[BAD_INPUT\]: the edge graph \(11 upstream × 27 downstream nodes, 110 edges\)/,
      );
      expect(r.err).not.toMatch(/forward/); // no method ran
      expect(existsSync(dir)).toBe(false);
    });
  });
});
