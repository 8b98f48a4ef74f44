import { readFileSync } from 'node:fs';
import { installLeakGuard, useBackend } from '@relp/testing';
import { describe, expect, it } from 'vitest';
import {
  attributeFeatures,
  FeatureCircuitEvaluator,
  featureNodeId,
  featureNodesFromResult,
  selectFeatureNodes,
} from '../src/index.js';
import {
  ATTRIBUTION_CASES,
  caseBatch,
  caseMethod,
  caseModel,
  caseSaes,
  circuitSetup,
} from './reference-cases.js';

installLeakGuard();

// Numbers recorded from the SAE package's own attribution and circuit engine before SAE features and errors became
// sites of core's engine. JSON keeps every float exactly (the sign of a zero aside): equality is bit for bit.
const reference = JSON.parse(
  readFileSync(new URL('./fixtures/feature-reference.json', import.meta.url), 'utf8'),
);
const roundTrip = (x: unknown) => JSON.parse(JSON.stringify(x));

describe('SAE nodes as sites of core engine = the recorded numbers, bit for bit [cpu]', () => {
  for (const c of ATTRIBUTION_CASES) {
    it(c.name, async () => {
      await useBackend('cpu');
      const m = caseModel(c.model);
      const saes = caseSaes(m);
      try {
        const r = await attributeFeatures(m, caseBatch(m), saes, {
          ...caseMethod(c),
          direction: c.direction,
          positions: c.positions,
          ...(c.normalize ? { normalize: true } : {}),
        });
        const want = reference.attribution[c.name];
        expect(r.label).toBe(want.label);
        expect(roundTrip(r.metric)).toEqual(want.metric);
        expect(roundTrip(r.sites)).toEqual(want.sites);
        if (c.method !== 'activation-patching') {
          expect(r.cost.forwardPasses).toBe(want.forwardPasses);
          expect(r.cost.backwardPasses).toBe(want.backwardPasses);
        }
      } finally {
        for (const s of saes) s.dispose();
        m.dispose();
      }
    });
  }

  for (const positions of ['sum', 'each'] as const) {
    it(`feature circuits, ${positions}`, async () => {
      await useBackend('cpu');
      const m = caseModel('gpt2');
      const { saes, discovery, test } = circuitSetup(m);
      try {
        const attr = await attributeFeatures(m, discovery, saes, { method: 'atp', positions });
        const scored = featureNodesFromResult(attr).filter(
          (n) => n.position === undefined || n.position < test.seqLen,
        );
        const ev = await FeatureCircuitEvaluator.create(m, discovery, test, saes, { positions });
        try {
          const want = reference.circuits[positions];
          expect(ev.mFull).toBe(want.mFull);
          expect(ev.mEmpty).toBe(want.mEmpty);
          // The same nodes; listed now in the order the SAEs were given (before: the order the run reached them).
          expect(ev.universe().map(featureNodeId).sort()).toEqual([...want.universe].sort());
          for (const w of want.evals) {
            const nodes = selectFeatureNodes(scored, { mode: 'top-k', value: w.k });
            expect(nodes.map(featureNodeId)).toEqual(w.ids);
            expect(roundTrip({ k: w.k, ids: w.ids, ...(await ev.evaluate(nodes)) })).toEqual(w);
          }
        } finally {
          ev.dispose();
        }
      } finally {
        for (const s of saes) s.dispose();
        m.dispose();
      }
    });
  }
});
