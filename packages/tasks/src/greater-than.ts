import { badInput } from '@relp/core/errors';
import { pick, seededRng } from './rng.js';
import type { TextPair } from './types.js';

/**
 * Greater-than after Hanna et al. 2023 ("How does GPT-2 compute greater-than?"): "The {noun} lasted from the
 * year 17YY to the year 17" should continue with a two-digit year > YY. The corrupt prompt uses the year
 * 1701, after which every year is plausible.
 *
 * Hanna et al.'s metric is a probability difference over all years (Σ_{y>YY} p(y) − Σ_{y≤YY} p(y)); relp's
 * metrics are a logit difference of one answer and one wrong token, so the pair's answer is the smallest
 * correct year YY+1 and its wrong token the largest incorrect one below YY, YY−1 (both two-digit tokens such as
 * "33" and "31"). On the clean prompt a model that does greater-than prefers the answer; on the corrupt
 * prompt (01) both are above the start year, so the difference falls towards 0. `gap` widens the two
 * (YY+gap vs YY−gap).
 */
export const GREATER_THAN_NOUNS: readonly string[] = [
  'abduction',
  'accord',
  'affair',
  'agreement',
  'appraisal',
  'assaults',
  'assessment',
  'attack',
  'attempts',
  'campaign',
  'captivity',
  'case',
  'challenge',
  'chaos',
  'clash',
  'collaboration',
  'coma',
  'competition',
  'confrontation',
  'consequence',
  'conspiracy',
  'construction',
  'consultation',
  'contact',
  'contract',
  'convention',
  'cooperation',
  'custody',
  'deal',
  'decline',
  'decrease',
  'demonstrations',
  'development',
  'disagreement',
  'disorder',
  'dispute',
  'domination',
  'dynasty',
  'effect',
  'effort',
  'employment',
  'endeavor',
  'engagement',
  'epidemic',
  'evaluation',
  'exchange',
  'existence',
  'expansion',
  'expedition',
  'experiments',
  'fall',
  'fame',
  'flights',
  'friendship',
  'growth',
  'hardship',
  'hostility',
  'illness',
  'impact',
  'imprisonment',
  'improvement',
  'incarceration',
  'increase',
  'insurgency',
  'invasion',
  'investigation',
  'journey',
  'kingdom',
  'marriage',
  'modernization',
  'negotiation',
  'notoriety',
  'obstruction',
  'operation',
  'order',
  'outbreak',
  'outcome',
  'overhaul',
  'patrols',
  'pilgrimage',
  'plague',
  'plan',
  'practice',
  'process',
  'program',
  'progress',
  'project',
  'pursuit',
  'quest',
  'raids',
  'reforms',
  'reign',
  'relationship',
  'retaliation',
  'riot',
  'rise',
  'rivalry',
  'romance',
  'rule',
  'sanctions',
  'shift',
  'siege',
  'slump',
  'stature',
  'stint',
  'strikes',
  'study',
  'test',
  'testing',
  'tests',
  'therapy',
  'tour',
  'tradition',
  'treaty',
  'trial',
  'trip',
  'unemployment',
  'voyage',
  'war',
  'warfare',
  'work',
];

export interface GreaterThanOptions {
  readonly n: number;
  readonly seed?: number;
  /** Two-digit century prefix (default "17"). */
  readonly century?: string;
  readonly gap?: number;
  readonly nouns?: readonly string[];
}

const two = (y: number): string => String(y).padStart(2, '0');

export function greaterThanPrompt(noun: string, century: string, yy: number): string {
  return `The ${noun} lasted from the year ${century}${two(yy)} to the year ${century}`;
}

export function generateGreaterThan(options: GreaterThanOptions): TextPair[] {
  const { n, seed = 0, century = '17', gap = 1, nouns = GREATER_THAN_NOUNS } = options;
  if (!Number.isInteger(n) || n <= 0)
    throw badInput(`the number of prompts must be a positive integer (got ${n})`);
  if (!Number.isInteger(gap) || gap < 1 || gap > 40)
    throw badInput(`greater-than gap must be in 1..40 (got ${gap})`);
  const rng = seededRng(seed);
  const out: TextPair[] = [];
  const lo = 1 + gap;
  const hi = 99 - gap;
  for (let i = 0; i < n; i++) {
    const noun = pick(rng, nouns);
    // YY in [1+gap, 99−gap] so both answer and wrong are two-digit years; Hanna et al. sample 02..98.
    const yy = lo + Math.floor(rng() * (hi - lo + 1));
    out.push({
      clean: greaterThanPrompt(noun, century, yy),
      corrupt: greaterThanPrompt(noun, century, 1),
      answer: two(yy + gap),
      wrong: two(yy - gap),
      meta: { task: 'greater-than', noun, yy, gap },
    });
  }
  return out;
}
