import { badInput, type EdgeAttributeOptions, type EdgeMethodKind, type RuleSet } from '@relp/core';
import { RELP, RELP_AH } from '@relp/lrp-rules';

/**
 * The named edge methods (docs/method.md §17), beside the node methods of `METHODS`: their results are edge scores
 * (`attributeEdges`), not site grids, so they are a list of their own. `relp` and `relp-ah` here are RelP on edges.
 */
export const EDGE_METHOD_NAMES = [
  'edge-patching',
  'eap',
  'relp',
  'relp-ah',
  'eap-ig-inputs',
  'eap-ig-activations',
] as const;
export type EdgeMethodName = (typeof EDGE_METHOD_NAMES)[number];

export interface NamedEdgeMethod {
  readonly name: EdgeMethodName;
  /** The engine's method (`attributeEdges`' `method`). */
  readonly kind: EdgeMethodKind;
  /** The LRP rules of its backward pass (RelP on edges); none for the others. */
  readonly rules?: RuleSet;
  readonly title: string;
  readonly summary: string;
  readonly cost: string;
}

export const EDGE_METHODS: readonly NamedEdgeMethod[] = [
  {
    name: 'edge-patching',
    kind: 'edge-patching',
    title: 'edge patching',
    summary:
      'the ground truth: one reader’s input changed by one writer’s difference, the metric’s change read off',
    cost: 'one forward pass per edge (batched; from the reader’s block and the first differing position)',
  },
  {
    name: 'eap',
    kind: 'eap',
    title: 'EAP',
    summary: 'edge attribution patching: the writer’s difference times the gradient at the reader’s input',
    cost: '2 forward + 1 backward',
  },
  {
    name: 'relp',
    kind: 'eap',
    rules: RELP,
    title: 'RelP (edges)',
    summary: 'EAP whose backward pass follows the LRP rules (LN, Identity, Half)',
    cost: '2 forward + 1 backward',
  },
  {
    name: 'relp-ah',
    kind: 'eap',
    rules: RELP_AH,
    title: 'RelP + AH-rule (edges)',
    summary: 'RelP on edges with the AH-rule on the attention softmax as well',
    cost: '2 forward + 1 backward',
  },
  {
    name: 'eap-ig-inputs',
    kind: 'eap-ig-inputs',
    title: 'EAP-IG (inputs)',
    summary: 'the readers’ gradients averaged along the straight path between the runs’ embeddings',
    cost: 'N + 2 forward + N backward (N = steps, default 10)',
  },
  {
    name: 'eap-ig-activations',
    kind: 'eap-ig-activations',
    title: 'EAP-IG (activations)',
    summary: 'the readers’ gradients averaged along each upstream layer’s own interpolated activation',
    cost: '(2L + 1)·N forward and backward + 2 (L layers)',
  },
];

/** The edge method of a name; BAD_INPUT naming the choices otherwise. */
export function edgeMethodByName(name: string): NamedEdgeMethod {
  const found = EDGE_METHODS.find((m) => m.name === name);
  if (found) return found;
  throw badInput(`unknown edge method '${name}'; choose one of ${EDGE_METHOD_NAMES.join(', ')}`, {
    method: name,
    known: [...EDGE_METHOD_NAMES],
  });
}

/** Settings a caller sets once for several edge methods; each receives those it takes. */
export interface EdgeMethodSettings {
  readonly steps?: number;
  readonly maxBatchRows?: number;
}

/** The engine options of one named edge method: its kind, rules, label, and the settings it takes. */
export function edgeMethodOptions(
  method: NamedEdgeMethod | string,
  settings: EdgeMethodSettings = {},
): Pick<EdgeAttributeOptions, 'method' | 'rules' | 'label' | 'steps' | 'maxBatchRows'> {
  const m = typeof method === 'string' ? edgeMethodByName(method) : method;
  const ig = m.kind === 'eap-ig-inputs' || m.kind === 'eap-ig-activations';
  return {
    method: m.kind,
    label: m.name,
    ...(m.rules ? { rules: m.rules } : {}),
    ...(ig && settings.steps !== undefined ? { steps: settings.steps } : {}),
    ...(settings.maxBatchRows !== undefined && m.kind !== 'eap'
      ? { maxBatchRows: settings.maxBatchRows }
      : {}),
  };
}
