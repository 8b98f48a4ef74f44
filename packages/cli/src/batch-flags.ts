/** The flags of batched runs (--batch-size, --shard, --no-resume) and the `relp merge` command. */
import { type Command, InvalidArgumentError } from 'commander';
import { DEFAULT_BATCH_SIZE } from './batched.js';
import { mergeCommand } from './commands/merge.js';
import type { CliIo } from './io.js';

/** The largest batch: far above what fits in memory for real models, low enough to catch a typo. */
const MAX_BATCH_SIZE = 1_000_000;

function batchSize(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 1 || n > MAX_BATCH_SIZE)
    throw new InvalidArgumentError(`--batch-size must be an integer from 1 to ${MAX_BATCH_SIZE} (got ${v})`);
  return n;
}

/** --batch-size and --no-resume; with `shard`, --shard i/n too. */
export function batchFlags(cmd: Command, { shard = false }: { shard?: boolean } = {}): Command {
  cmd
    .option(
      '--batch-size <n>',
      `pairs scored at a time: memory grows with it, scores do not change beyond float rounding (default ${DEFAULT_BATCH_SIZE})`,
      batchSize,
    )
    .option('--no-resume', 'start over instead of going on from the checkpoint <out>.partial.json');
  if (shard) {
    cmd.option(
      '--shard <i/n>',
      'score only the i-th of n shards (i from 0) and write a partial result for relp merge',
    );
  }
  return cmd;
}

/** `relp merge <partials…> --out result.json`. */
export function mergeProgram(program: Command, io: CliIo, examples: (lines: string[]) => string): void {
  program
    .command('merge <partials...>')
    .description(
      'combine the partial results of relp attribute --shard i/n into the unsplit run’s result.json',
    )
    .requiredOption('--out <result.json>', 'where to write the result')
    .option('--force', 'replace an existing output')
    .option('--json', 'print the result on stdout too')
    .option('-q, --quiet', 'no messages')
    .addHelpText(
      'after',
      examples([
        'for i in 0 1 2 3; do pnpm relp attribute --model ./gpt2 --data pairs.jsonl --method relp --shard $i/4 --out part-$i.json; done',
        'pnpm relp merge part-*.json --out result.json',
      ]),
    )
    .action(async (paths: string[], o) => mergeCommand(paths, o, io));
}
