// One-off: records the old engine's numbers into fixtures/feature-reference.json (run with RELP_CAPTURE=1).
import { writeFileSync } from 'node:fs';
import { useBackend } from '@relp/testing';
import { it } from 'vitest';
import {
  attributeFeatures,
  FeatureCircuitEvaluator,
  featureNodeId,
  featureNodesFromResult,
  selectFeatureNodes,
} from '../src/index.js';
import { ATTRIBUTION_CASES, caseBatch, caseModel, caseRules, caseSaes, circuitSetup } from './reference-cases.js';

it.runIf(process.env.RELP_CAPTURE === '1')('capture', { timeout: 900_000 }, async () => {
  await useBackend('cpu');
  const attribution: Record<string, unknown> = {};
  for (const c of ATTRIBUTION_CASES) {
    const m = caseModel(c.model);
    const saes = caseSaes(m);
    const batch = caseBatch(m);
    const rules = caseRules(c);
    const r = await attributeFeatures(m, batch, saes, {
      method: c.method,
      direction: c.direction,
      positions: c.positions,
      ...(rules ? { rules } : {}),
      ...(c.normalize ? { normalize: true } : {}),
      ...(c.igSteps ? { igSteps: c.igSteps } : {}),
      ...(c.maxBatchRows ? { maxBatchRows: c.maxBatchRows } : {}),
    });
    attribution[c.name] = {
      label: r.label,
      metric: r.metric,
      sites: r.sites,
      forwardPasses: r.cost.forwardPasses,
      backwardPasses: r.cost.backwardPasses,
    };
    for (const s of saes) s.dispose();
    m.dispose();
  }
  const circuits: Record<string, unknown> = {};
  const m = caseModel('gpt2');
  const { saes, discovery, test } = circuitSetup(m);
  for (const positions of ['sum', 'each'] as const) {
    const attr = await attributeFeatures(m, discovery, saes, { method: 'atp', positions });
    const scored = featureNodesFromResult(attr).filter((n) => n.position === undefined || n.position < test.seqLen);
    const ev = await FeatureCircuitEvaluator.create(m, discovery, test, saes, { positions });
    const evals = [];
    for (const k of [0, 1, 3, 8, 20]) {
      const nodes = selectFeatureNodes(scored, { mode: 'top-k', value: k });
      evals.push({ k, ids: nodes.map(featureNodeId), ...(await ev.evaluate(nodes)) });
    }
    circuits[positions] = { mFull: ev.mFull, mEmpty: ev.mEmpty, universe: ev.universe().map(featureNodeId), evals };
    ev.dispose();
  }
  for (const s of saes) s.dispose();
  m.dispose();
  writeFileSync(
    new URL('./fixtures/feature-reference.json', import.meta.url),
    `${JSON.stringify({ attribution, circuits }, null, 1)}\n`,
  );
});
