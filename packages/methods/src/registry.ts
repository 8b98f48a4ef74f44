import {
  type AtpMethodOptions,
  badInput,
  type IgMethodOptions,
  METHOD_KNOBS,
  type MethodKind,
  type PatchingMethodOptions,
  type RuleSet,
} from '@relp/core';
import { ATTNLRP, RELP, RELP_AH, RELP_CP } from '@relp/lrp-rules';

/** The names the CLI, the web package and the docs offer (the registry's order). */
export const METHOD_NAMES = [
  'activation-patching',
  'atp',
  'relp',
  'relp-ah',
  'relp-cp',
  'attnlrp',
  'ig',
] as const;
export type MethodName = (typeof METHOD_NAMES)[number];

/** One named method: which engine method runs, with which rules, and how to present it. */
export interface NamedMethod {
  readonly name: MethodName;
  /** Other names accepted on input. */
  readonly aliases: readonly string[];
  /** The engine's method (`attribute`'s `method`). */
  readonly kind: MethodKind;
  /** The LRP rule set of its backward pass (RelP presets); none for the others. */
  readonly rules?: RuleSet;
  /** Short display name. */
  readonly title: string;
  /** One line: what the method computes. */
  readonly summary: string;
  /** What one run costs, in passes over the batch. */
  readonly cost: string;
  /** Where docs/method.md defines it. */
  readonly section: string;
}

/** Every named method, in presentation order; activation patching, the ground truth, first. */
export const METHODS: readonly NamedMethod[] = [
  {
    name: 'activation-patching',
    aliases: ['ap'],
    kind: 'activation-patching',
    title: 'activation patching',
    summary:
      'the ground truth: each unit’s value from one run patched into the other, the metric’s change read off',
    cost: 'one forward pass per unit (batched; the fast strategy reuses the blocks before a patch)',
    section: '§7',
  },
  {
    name: 'atp',
    aliases: [],
    kind: 'atp',
    title: 'AtP',
    summary: 'attribution patching: the difference of the two runs times the plain gradient of the metric',
    cost: '2 forward + 1 backward',
    section: '§8',
  },
  {
    name: 'relp',
    aliases: [],
    kind: 'atp',
    rules: RELP,
    title: 'RelP',
    summary: 'attribution patching whose backward pass follows the LRP rules (LN, Identity, Half)',
    cost: '2 forward + 1 backward',
    section: '§9–§11',
  },
  {
    name: 'relp-ah',
    aliases: [],
    kind: 'atp',
    rules: RELP_AH,
    title: 'RelP + AH-rule',
    summary: 'RelP with the AH-rule on the attention softmax as well',
    cost: '2 forward + 1 backward',
    section: '§10.4, §11',
  },
  {
    name: 'relp-cp',
    aliases: [],
    kind: 'atp',
    rules: RELP_CP,
    title: 'RelP + CP gate',
    summary: 'RelP with the CP gate rule: a gated MLP’s gate is a constant, relevance reaches up only',
    cost: '2 forward + 1 backward',
    section: '§11.1',
  },
  {
    name: 'attnlrp',
    aliases: [],
    kind: 'atp',
    rules: ATTNLRP,
    title: 'AttnLRP',
    summary:
      'RelP with AttnLRP’s uniform rule on the attention products (pattern·v halved, q and k a quarter)',
    cost: '2 forward + 1 backward',
    section: '§11.3',
  },
  {
    name: 'ig',
    aliases: [],
    kind: 'ig',
    title: 'integrated gradients',
    summary:
      'the gradient averaged along the straight path between the runs, in N steps, times the difference',
    cost: 'N + 2 forward + N backward (N = steps, default 10)',
    section: '§12',
  },
];

/** The method of a name or alias; BAD_INPUT naming the choices otherwise. */
export function methodByName(name: string): NamedMethod {
  const found = METHODS.find((m) => m.name === name || m.aliases.includes(name));
  if (found) return found;
  throw badInput(`unknown method '${name}'; choose one of ${METHOD_NAMES.join(', ')}`, {
    method: name,
    known: [...METHOD_NAMES],
  });
}

/** "atp, relp,ig" → the methods, each once, in the order given. */
export function parseMethodList(list: string): NamedMethod[] {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw badInput('no methods given');
  return [...new Set(names.map(methodByName))];
}

/**
 * Knobs a caller sets once for several methods; each method receives only those it takes (METHOD_KNOBS):
 * `maxBatchRows` reaches activation patching and IG, `igSteps` / `igInterpolate` IG only.
 */
export interface MethodSettings {
  readonly igSteps?: number;
  readonly igInterpolate?: 'embeddings' | 'site';
  readonly maxBatchRows?: number;
  readonly patchingStrategy?: 'fast' | 'naive';
}

export type NamedMethodOptions = (PatchingMethodOptions | AtpMethodOptions | IgMethodOptions) & {
  readonly label: MethodName;
};

/** The engine options of one named method: its kind, rules, label, and the settings it takes. */
export function methodOptions(
  method: NamedMethod | string,
  settings: MethodSettings = {},
): NamedMethodOptions {
  const m = typeof method === 'string' ? methodByName(method) : method;
  const label = m.name;
  const rules = m.rules ? { rules: m.rules } : {};
  const set = <K extends keyof MethodSettings>(k: K) =>
    settings[k] === undefined ? {} : ({ [k]: settings[k] } as Pick<MethodSettings, K>);
  switch (m.kind) {
    case 'activation-patching':
      return { method: m.kind, label, ...set('maxBatchRows'), ...set('patchingStrategy') };
    case 'atp':
      return { method: m.kind, label, ...rules };
    case 'ig':
      return {
        method: m.kind,
        label,
        ...rules,
        ...set('igSteps'),
        ...set('igInterpolate'),
        ...set('maxBatchRows'),
      };
  }
}

/** The settings that none of `methods` takes (a user who passed them would expect them to matter). */
export function unusedSettings(methods: readonly NamedMethod[], settings: MethodSettings): string[] {
  return (Object.keys(settings) as (keyof MethodSettings)[]).filter(
    (k) => settings[k] !== undefined && !methods.some((m) => METHOD_KNOBS[m.kind].includes(k)),
  );
}

/** BAD_INPUT when a setting reaches none of the methods; `flag` spells a setting as its caller knows it. */
export function checkSettings(
  methods: readonly NamedMethod[],
  settings: MethodSettings,
  flag: (setting: string) => string = (s) => s,
): void {
  const unused = unusedSettings(methods, settings);
  if (unused.length === 0) return;
  const takers = (k: string) =>
    METHODS.filter((m) => METHOD_KNOBS[m.kind].includes(k))
      .map((m) => m.name)
      .join(', ');
  throw badInput(
    unused
      .map(
        (k) =>
          `${flag(k)} applies to ${takers(k)}, none of which is among ${methods.map((m) => m.name).join(', ')}`,
      )
      .join('; '),
    { unused },
  );
}
