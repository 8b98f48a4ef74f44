import { badInput } from '@relp/core/errors';
import { generateGreaterThan } from './greater-than.js';
import { generateIoi, type IoiCorruption, type IoiOrder, ioiDemoPairs } from './ioi.js';
import { generateSva, SVA_STRUCTURES, type SvaStructure } from './sva.js';
import type { TextPair } from './types.js';

export interface TaskOptions {
  /** Number of prompts for generated tasks (ignored by fixed sets such as ioi-demo). */
  readonly n?: number;
  readonly seed?: number;
  /** IOI: s2-swap (default) or abc. */
  readonly corruption?: string;
  /** IOI: ABBA, BABA or mixed. */
  readonly order?: string;
}

export interface TaskInfo {
  readonly name: string;
  readonly description: string;
  /** Whether the task is a fixed prompt set (n and seed do not apply). */
  readonly fixed: boolean;
  /** Prompts generated when n is not given. */
  readonly defaultN: number;
  readonly corruptions?: readonly string[];
}

export const TASKS: readonly TaskInfo[] = [
  {
    name: 'ioi',
    description: 'indirect object identification (Wang et al. 2022 templates, ABBA + BABA), seeded',
    fixed: false,
    defaultN: 100,
    corruptions: ['s2-swap', 'abc'],
  },
  {
    name: 'ioi-demo',
    description: 'the 8 IOI prompts of the RelP reference demo (s2-swap, pairs 0↔1, 2↔3, …)',
    fixed: true,
    defaultN: 8,
    corruptions: ['s2-swap'],
  },
  {
    name: 'greater-than',
    description: 'Hanna et al. 2023: "The war lasted from the year 17YY to the year 17" vs 1701',
    fixed: false,
    defaultN: 100,
  },
  ...SVA_STRUCTURES.map((s) => ({
    name: `sva-${s}`,
    description: `subject–verb agreement, ${s} (singular/plural flipped in the corrupt prompt)`,
    fixed: false,
    defaultN: 100,
  })),
];

export function taskNames(): string[] {
  return TASKS.map((t) => t.name);
}

/** Builds a task's text pairs. Unknown names and options are BAD_INPUT errors that list the valid ones. */
export function buildTask(name: string, options: TaskOptions = {}): TextPair[] {
  const info = TASKS.find((t) => t.name === name);
  if (!info)
    throw badInput(`unknown task '${name}'; choose one of ${taskNames().join(', ')}`, { task: name });
  const n = options.n ?? info.defaultN;
  const seed = options.seed ?? 0;
  if (
    options.corruption !== undefined &&
    info.corruptions &&
    !info.corruptions.includes(options.corruption)
  ) {
    throw badInput(
      `task ${name} has no corruption '${options.corruption}' (choose ${info.corruptions.join(', ')})`,
    );
  }
  if (options.corruption !== undefined && !info.corruptions) {
    throw badInput(`task ${name} has a single, fixed corruption; --corruption does not apply`);
  }
  switch (name) {
    case 'ioi': {
      const order = options.order ?? 'mixed';
      if (!['ABBA', 'BABA', 'mixed'].includes(order))
        throw badInput(`IOI order must be ABBA, BABA or mixed (got ${order})`);
      return generateIoi({
        n,
        seed,
        corruption: (options.corruption ?? 's2-swap') as IoiCorruption,
        order: order as IoiOrder,
      });
    }
    case 'ioi-demo':
      return ioiDemoPairs();
    case 'greater-than':
      return generateGreaterThan({ n, seed });
    default:
      return generateSva({ n, seed, structure: name.slice('sva-'.length) as SvaStructure });
  }
}
