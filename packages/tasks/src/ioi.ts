import { badInput } from '@relp/core/errors';
import { pick, pickDistinct, seededRng } from './rng.js';
import type { TextPair } from './types.js';

/**
 * Indirect object identification after Wang et al. 2022 ("Interpretability in the Wild"), Figure 14 /
 * Appendix E. In the BABA order [B] is the subject S (named twice) and [A] the indirect object IO; the
 * final " [A]" is the answer and not part of the prompt. ABBA swaps the first [B] and the first [A], exactly
 * as the authors' ioi_dataset.py derives ABBA_TEMPLATES from BABA_TEMPLATES.
 */
export const IOI_BABA_TEMPLATES: readonly string[] = [
  'Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]',
  'Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]',
  'Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]',
  'Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]',
  'Then, [B] and [A] had a long argument, and afterwards [B] said to [A]',
  'After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]',
  'When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]',
  'When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]',
  'While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]',
  'While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]',
  'After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]',
  'Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]',
  'Then, [B] and [A] had a long argument. Afterwards [B] said to [A]',
  'The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]',
  'Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]',
];

/** ABBA: the first [B] becomes [A] and the first [A] becomes [B] (Wang et al.'s own derivation). */
export const IOI_ABBA_TEMPLATES: readonly string[] = IOI_BABA_TEMPLATES.map((t) => {
  const b = t.indexOf('[B]');
  const a = t.indexOf('[A]');
  return `${t.slice(0, b)}[A]${t.slice(b + 3, a)}[B]${t.slice(a + 3)}`;
});

/** The authors' 100 first names (each one GPT-2 token with a leading space). */
export const IOI_NAMES: readonly string[] = [
  'Aaron',
  'Adam',
  'Alan',
  'Alex',
  'Alice',
  'Amy',
  'Anderson',
  'Andre',
  'Andrew',
  'Andy',
  'Anna',
  'Anthony',
  'Arthur',
  'Austin',
  'Blake',
  'Brandon',
  'Brian',
  'Carter',
  'Charles',
  'Charlie',
  'Christian',
  'Christopher',
  'Clark',
  'Cole',
  'Collins',
  'Connor',
  'Crew',
  'Crystal',
  'Daniel',
  'David',
  'Dean',
  'Edward',
  'Elizabeth',
  'Emily',
  'Eric',
  'Eva',
  'Ford',
  'Frank',
  'George',
  'Georgia',
  'Graham',
  'Grant',
  'Henry',
  'Ian',
  'Jack',
  'Jacob',
  'Jake',
  'James',
  'Jamie',
  'Jane',
  'Jason',
  'Jay',
  'Jennifer',
  'Jeremy',
  'Jessica',
  'John',
  'Jonathan',
  'Jordan',
  'Joseph',
  'Joshua',
  'Justin',
  'Kate',
  'Kelly',
  'Kevin',
  'Kyle',
  'Laura',
  'Leon',
  'Lewis',
  'Lisa',
  'Louis',
  'Luke',
  'Madison',
  'Marco',
  'Marcus',
  'Maria',
  'Mark',
  'Martin',
  'Mary',
  'Matthew',
  'Max',
  'Michael',
  'Michelle',
  'Morgan',
  'Patrick',
  'Paul',
  'Peter',
  'Prince',
  'Rachel',
  'Richard',
  'River',
  'Robert',
  'Roman',
  'Rose',
  'Ruby',
  'Russell',
  'Ryan',
  'Sarah',
  'Scott',
  'Sean',
  'Simon',
  'Stephen',
  'Steven',
  'Sullivan',
  'Taylor',
  'Thomas',
  'Tyler',
  'Victoria',
  'Warren',
  'William',
];

export const IOI_PLACES: readonly string[] = [
  'store',
  'garden',
  'restaurant',
  'school',
  'hospital',
  'office',
  'house',
  'station',
];

export const IOI_OBJECTS: readonly string[] = [
  'ring',
  'kiss',
  'bone',
  'basketball',
  'computer',
  'necklace',
  'drink',
  'snack',
];

/**
 * s2-swap: the other name at S2 (the RelP paper's demo; the repeated name becomes the IO, so the model's
 * preference flips). abc: the three name slots get three distinct names that are neither IO nor S (Wang et
 * al.'s ABC distribution: no name is repeated, so there is no IO to find).
 */
export type IoiCorruption = 's2-swap' | 'abc';
export type IoiOrder = 'ABBA' | 'BABA' | 'mixed';

export interface IoiOptions {
  readonly n: number;
  readonly seed?: number;
  readonly corruption?: IoiCorruption;
  /** ABBA, BABA, or mixed (alternating, half each; default). */
  readonly order?: IoiOrder;
  readonly names?: readonly string[];
  readonly places?: readonly string[];
  readonly objects?: readonly string[];
  readonly templates?: { readonly ABBA: readonly string[]; readonly BABA: readonly string[] };
}

interface Slots {
  readonly io: string;
  readonly s1: string;
  readonly s2: string;
  readonly place: string;
  readonly object: string;
}

/** Fills a template (with its trailing " [A]" removed) with the given names in each slot. */
export function fillIoiTemplate(template: string, slots: Slots): string {
  if (!template.endsWith(' [A]')) throw badInput(`IOI template must end with " [A]": ${template}`);
  let t = template.slice(0, -4);
  // The first [A] is the IO; the [B]s are S1 and S2 in order.
  t = t.replace('[A]', slots.io);
  t = t.replace('[B]', slots.s1);
  t = t.replace('[B]', slots.s2);
  if (t.includes('[A]') || t.includes('[B]'))
    throw badInput(`IOI template has extra name slots: ${template}`);
  return t.replaceAll('[PLACE]', slots.place).replaceAll('[OBJECT]', slots.object);
}

/** A seeded set of n IOI pairs (clean: "… B gave a ring to" → answer " A", wrong " B"). */
export function generateIoi(options: IoiOptions): TextPair[] {
  const {
    n,
    seed = 0,
    corruption = 's2-swap',
    order = 'mixed',
    names = IOI_NAMES,
    places = IOI_PLACES,
    objects = IOI_OBJECTS,
    templates = { ABBA: IOI_ABBA_TEMPLATES, BABA: IOI_BABA_TEMPLATES },
  } = options;
  if (!Number.isInteger(n) || n <= 0)
    throw badInput(`the number of prompts must be a positive integer (got ${n})`);
  if (names.length < 5) throw badInput('IOI needs at least 5 distinct names');
  const rng = seededRng(seed);
  const out: TextPair[] = [];
  for (let i = 0; i < n; i++) {
    const o: 'ABBA' | 'BABA' = order === 'mixed' ? (i % 2 === 0 ? 'ABBA' : 'BABA') : order;
    const ti = Math.floor(rng() * templates[o].length);
    const template = templates[o][ti]!;
    const [io, s] = pickDistinct(rng, names, 2) as [string, string];
    const place = pick(rng, places);
    const object = pick(rng, objects);
    const clean = fillIoiTemplate(template, { io, s1: s, s2: s, place, object });
    let corrupt: string;
    const meta: Record<string, string | number> = { task: 'ioi', order: o, template: ti, io, s, corruption };
    if (corruption === 's2-swap') {
      corrupt = fillIoiTemplate(template, { io, s1: s, s2: io, place, object });
    } else {
      const [c, d, e] = pickDistinct(rng, names, 3, [io, s]) as [string, string, string];
      corrupt = fillIoiTemplate(template, { io: c, s1: d, s2: e, place, object });
      Object.assign(meta, { c, d, e });
    }
    out.push({ clean, corrupt, answer: ` ${io}`, wrong: ` ${s}`, meta });
  }
  return out;
}

/**
 * The 8 prompts of the RelP reference demo (FarnoushRJ/RelP, TransformerLens/demos/lrp_patching.ipynb),
 * copied verbatim: the corrupt prompt of each is its neighbour in the list (pairs 0↔1, 2↔3, …), i.e. the
 * other name at S2, and the answer/wrong tokens are the notebook's. The notebook's model prepends
 * <|endoftext|>, giving 15 positions with the GPT-2 tokenizer.
 */
export const IOI_DEMO_PROMPTS: readonly string[] = [
  'When John and Mary went to the shops, John gave the bag to',
  'When John and Mary went to the shops, Mary gave the bag to',
  'When Tom and James went to the park, James gave the ball to',
  'When Tom and James went to the park, Tom gave the ball to',
  'When Dan and Sid went to the shops, Sid gave an apple to',
  'When Dan and Sid went to the shops, Dan gave an apple to',
  'After Martin and Amy went to the park, Amy gave a drink to',
  'After Martin and Amy went to the park, Martin gave a drink to',
];

export const IOI_DEMO_ANSWERS: readonly (readonly [string, string])[] = [
  [' Mary', ' John'],
  [' John', ' Mary'],
  [' Tom', ' James'],
  [' James', ' Tom'],
  [' Dan', ' Sid'],
  [' Sid', ' Dan'],
  [' Martin', ' Amy'],
  [' Amy', ' Martin'],
];

export function ioiDemoPairs(): TextPair[] {
  return IOI_DEMO_PROMPTS.map((clean, i) => {
    const [answer, wrong] = IOI_DEMO_ANSWERS[i]!;
    return {
      clean,
      corrupt: IOI_DEMO_PROMPTS[i % 2 === 0 ? i + 1 : i - 1]!,
      answer,
      wrong,
      meta: { task: 'ioi-demo', index: i, corruption: 's2-swap' },
    };
  });
}
