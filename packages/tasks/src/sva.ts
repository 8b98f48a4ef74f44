import { badInput } from '@relp/core/errors';
import { pick, seededRng } from './rng.js';
import type { TextPair } from './types.js';

/**
 * Subject–verb agreement, the four structures of Marks et al. 2024 (Sparse Feature Circuits, after Finlayson
 * et al. 2021). The prompt stops where a verb must agree with one noun; the pair's answer is the verb form that
 * agrees on the clean prompt and the wrong token the other form. The corrupt prompt flips the number of the
 * noun that the verb must agree with (singular ↔ plural), so the preferred form flips too.
 *
 * - simple:     "The author"                               → " is" / " are"            (agrees with subject)
 * - across-rc:  "The author that the guards like"          → " is" / " are"            (subject, across an RC)
 * - within-rc:  "The author that the guards"               → " like" / " likes"         (the RC's subject)
 * - across-pp:  "The author near the guards"               → " is" / " are"            (subject, across a PP)
 */
export type SvaStructure = 'simple' | 'across-rc' | 'within-rc' | 'across-pp';
export const SVA_STRUCTURES: readonly SvaStructure[] = ['simple', 'across-rc', 'within-rc', 'across-pp'];

/** [singular, plural] nouns. Pairs whose two forms tokenise to different lengths are dropped by the check. */
export const SVA_NOUNS: readonly (readonly [string, string])[] = [
  ['author', 'authors'],
  ['pilot', 'pilots'],
  ['surgeon', 'surgeons'],
  ['farmer', 'farmers'],
  ['manager', 'managers'],
  ['customer', 'customers'],
  ['officer', 'officers'],
  ['teacher', 'teachers'],
  ['senator', 'senators'],
  ['dancer', 'dancers'],
  ['guard', 'guards'],
  ['architect', 'architects'],
  ['doctor', 'doctors'],
  ['lawyer', 'lawyers'],
  ['executive', 'executives'],
  ['student', 'students'],
  ['parent', 'parents'],
  ['minister', 'ministers'],
  ['player', 'players'],
  ['driver', 'drivers'],
];

/** [singular, plural] main-clause verbs used as answers for the subject. */
export const SVA_MAIN_VERBS: readonly (readonly [string, string])[] = [
  ['is', 'are'],
  ['was', 'were'],
  ['has', 'have'],
];

/** [singular, plural] transitive verbs inside relative clauses. */
export const SVA_RC_VERBS: readonly (readonly [string, string])[] = [
  ['likes', 'like'],
  ['loves', 'love'],
  ['hates', 'hate'],
  ['admires', 'admire'],
  ['knows', 'know'],
];

export const SVA_PREPOSITIONS: readonly string[] = ['near', 'behind', 'beside', 'with'];

export interface SvaOptions {
  readonly n: number;
  readonly seed?: number;
  readonly structure: SvaStructure;
}

type Num = 0 | 1;

export function generateSva(options: SvaOptions): TextPair[] {
  const { n, seed = 0, structure } = options;
  if (!Number.isInteger(n) || n <= 0)
    throw badInput(`the number of prompts must be a positive integer (got ${n})`);
  if (!SVA_STRUCTURES.includes(structure)) {
    throw badInput(`unknown agreement structure '${structure}' (choose ${SVA_STRUCTURES.join(', ')})`);
  }
  const rng = seededRng(seed);
  const out: TextPair[] = [];
  for (let i = 0; i < n; i++) {
    const subj = pick(rng, SVA_NOUNS);
    let obj = pick(rng, SVA_NOUNS);
    while (obj === subj) obj = pick(rng, SVA_NOUNS);
    // Alternate the clean number so the set is balanced; the other noun's number is random.
    const sn: Num = (i % 2) as Num;
    const on: Num = rng() < 0.5 ? 0 : 1;
    const main = pick(rng, SVA_MAIN_VERBS);
    const rcVerb = pick(rng, SVA_RC_VERBS);
    const prep = pick(rng, SVA_PREPOSITIONS);
    const flip = (x: Num): Num => (1 - x) as Num;
    const meta = { task: `sva-${structure}`, structure, subject: subj[sn], object: obj[on] };
    const build = (s: Num, o: Num): string => {
      switch (structure) {
        case 'simple':
          return `The ${subj[s]}`;
        case 'across-rc':
          return `The ${subj[s]} that the ${obj[o]} ${rcVerb[o]}`;
        case 'within-rc':
          return `The ${subj[s]} that the ${obj[o]}`;
        case 'across-pp':
          return `The ${subj[s]} ${prep} the ${obj[o]}`;
      }
    };
    if (structure === 'within-rc') {
      out.push({
        clean: build(sn, on),
        corrupt: build(sn, flip(on)),
        answer: ` ${rcVerb[on]}`,
        wrong: ` ${rcVerb[flip(on)]}`,
        meta,
      });
    } else {
      out.push({
        clean: build(sn, on),
        corrupt: build(flip(sn), on),
        answer: ` ${main[sn]}`,
        wrong: ` ${main[flip(sn)]}`,
        meta,
      });
    }
  }
  return out;
}
