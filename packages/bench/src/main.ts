// `pnpm bench`: times relp on every available tfjs backend next to PyTorch CPU, on GPT-2-small-shaped and
// Pythia-160m-shaped random models, 8 prompts × 16 tokens. Each (backend, model) runs in its own process
// (src/worker.ts, python/bench_torch.py) so that its peak RSS is its own. Prints a Markdown table.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isRealModel, prepareReal } from './real.js';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, '..');

const { values: opt } = parseArgs({
  options: {
    models: { type: 'string', default: 'gpt2,pythia,smollm2' },
    backends: { type: 'string', default: 'native,wasm,cpu' },
    tasks: { type: 'string', default: 'forward,atp,relp,patch-fast,patch-naive' },
    /** Tasks for the slow portable backends (cpu, wasm); default: the same as --tasks. */
    'slow-tasks': { type: 'string' },
    reps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    'patch-layers': { type: 'string', default: '12' },
    'naive-reps': { type: 'string', default: '1' },
    /** Tasks on real models (smollm2); activation patching there is opt-in (--real-patching). */
    'real-tasks': { type: 'string', default: 'forward,atp,relp' },
    'real-patching': { type: 'boolean', default: false },
    threads: { type: 'string', default: '2' },
    /** Runs every backend and PyTorch this many times in turn (relp, PyTorch, relp, …): ratios per round. */
    rounds: { type: 'string', default: '1' },
    torch: { type: 'boolean', default: true },
    'no-torch': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    /** What --profile covers: one RelP attribution (relp) or one fast activation patching run (patch-fast). */
    'profile-task': { type: 'string', default: 'relp' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (opt.help) {
  console.log(`pnpm bench [--models gpt2,pythia,smollm2] [--backends native,webgpu,wasm,cpu] [--tasks ${opt.tasks}]
           [--slow-tasks <tasks for cpu/wasm>] [--real-tasks forward,atp,relp] [--real-patching]
           [--reps 3] [--warmup 1] [--patch-layers 12] [--naive-reps 1] [--threads 2] [--rounds 1] [--no-torch] [--profile] [--profile-task relp|patch-fast] [--json out.json]
Tasks: forward (one pass, last-position logits), atp, relp (2 forward + 1 backward to resid_pre/attn_out/mlp_out),
patch-fast / patch-naive (exact activation patching over the same sites on a --patch-layers-layer model of the
same widths; 12: the model itself; patch-naive runs --naive-reps repetitions without warm-up, since it makes one
full forward pass per patch: 576 at 12 layers).
Models: gpt2 and pythia are random-weight GPT-2-small / Pythia-160m shapes on 8 × 16 random tokens; smollm2 is
SmolLM2-135M from the cache (relp models fetch smollm2-135m; skipped when absent) on the 8 IOI prompts of
task ioi-demo, with --real-tasks (forward,atp,relp) and, with --real-patching, fast activation patching on all
30 layers (minutes a repetition). Both sides use --threads threads. --rounds N runs relp and PyTorch N times in
turn (each round: every backend, then PyTorch) and reports each round's table and the median of the per-round
ratios: on a machine whose speed drifts by tens of percent over minutes, one pair of runs says less.`);
  process.exit(0);
}

interface TaskResult {
  task: string;
  layers: number;
  median: number;
  times: number[];
  cpuMedian?: number;
  peakTensorBytes?: number;
  maxRssBytes?: number;
  forwardEquivalents?: number;
  forwardPasses?: number;
}

interface RunResult {
  backend: string;
  model?: string;
  skipped?: string;
  layers?: number;
  maxRssBytes?: number;
  results?: TaskResult[];
  profile?: { kernel: string; ms: number; calls: number }[];
  profileShapes?: { kernel: string; ms: number; calls: number }[];
  profileMedian?: { kernel: string; ms: number; calls: number }[];
  profileWallSeconds?: number;
  native?: { threads: number; blas: string; core: string };
  torch?: string;
  threads?: number;
  load?: [number, number];
  /** Which of --rounds this run belongs to (0-based). */
  round?: number;
}

const common = [
  '--threads',
  opt.threads!,
  '--reps',
  opt.reps!,
  '--warmup',
  opt.warmup!,
  '--patch-layers',
  opt['patch-layers']!,
  '--naive-reps',
  opt['naive-reps']!,
  ...(opt.profile ? ['--profile', '--profile-task', opt['profile-task']!] : []),
];

async function runProcess(cmd: string, args: string[]): Promise<RunResult> {
  const load0 = loadavg()[0]!;
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { cwd: pkg, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      process.stderr.write(d);
    });
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) {
        resolvePromise({
          backend: args.includes('--backend') ? args[args.indexOf('--backend') + 1]! : 'pytorch',
          skipped: `failed (exit ${code}): ${err.trim().split('\n').slice(-3).join(' / ')}`,
        });
        return;
      }
      const r = JSON.parse(line.slice(7)) as RunResult;
      r.load = [load0, loadavg()[0]!];
      resolvePromise(r);
    });
  });
}

function torchAvailable(): string | undefined {
  const r = spawnSync('python3', ['-c', 'import torch, transformers; print(torch.__version__)'], {
    encoding: 'utf8',
  });
  if (r.error) return `python3 not found (${r.error.message})`;
  if (r.status !== 0)
    return `python3 cannot import torch and transformers: ${r.stderr.trim().split('\n').pop()}`;
  return undefined;
}

const models = opt.models!.split(',');
const backends = opt.backends!.split(',');
const noTorch = opt['no-torch'] || !opt.torch;
const torchMissing = noTorch ? 'skipped (--no-torch)' : torchAvailable();
const all: RunResult[] = [];
const started = new Date();
console.error(
  `relp bench: ${models.join(', ')} on ${backends.join(', ')}${torchMissing ? '' : ' + pytorch'}`,
);

const workDir = mkdtempSync(join(tmpdir(), 'relp-bench-'));
const realNotes: Record<string, string> = {};
const rounds = Math.max(1, Number(opt.rounds) || 1);
// A real model's workload is tokenised once; every round reads the same file.
const prepared = new Map<string, { extra: string[]; realTasks?: string } | { skipped: string }>();
for (const model of models) {
  if (!isRealModel(model)) {
    prepared.set(model, { extra: [] });
    continue;
  }
  const w = await prepareReal(model);
  if (typeof w === 'string') {
    console.error(`relp bench: ${model} ${w}`);
    prepared.set(model, { skipped: w });
    continue;
  }
  const file = join(workDir, `${model}.json`);
  writeFileSync(file, JSON.stringify(w));
  const lens = w.pairs.map((p) => p.clean.length);
  realNotes[model] =
    `${w.alias} (${w.gguf}), task ${w.task}: ${w.pairs.length} pairs, ${Math.min(...lens)}–${Math.max(...lens)} tokens` +
    `${w.bos ? ' (BOS prepended)' : ''}, right-padded with id ${w.padId}`;
  prepared.set(model, {
    extra: ['--workload', file],
    realTasks: `${opt['real-tasks']}${opt['real-patching'] ? ',patch-fast' : ''}`,
  });
}
for (let round = 0; round < rounds; round++) {
  for (const model of models) {
    const prep = prepared.get(model)!;
    if ('skipped' in prep) {
      all.push({ backend: 'all', model, skipped: prep.skipped, round });
      continue;
    }
    const { extra, realTasks } = prep;
    for (const backend of backends) {
      const tasks = realTasks ?? (backend === 'native' ? opt.tasks! : (opt['slow-tasks'] ?? opt.tasks!));
      all.push({
        ...(await runProcess(process.execPath, [
          '--conditions=source',
          '--import',
          'tsx',
          join(here, 'worker.ts'),
          '--backend',
          backend,
          '--model',
          model,
          '--tasks',
          tasks,
          ...common,
          ...extra,
        ])),
        model,
        round,
      });
    }
    if (!torchMissing) {
      all.push({
        ...(await runProcess('python3', [
          join(pkg, 'python', 'bench_torch.py'),
          '--model',
          model,
          '--tasks',
          realTasks ?? opt.tasks!,
          ...common,
          ...extra,
        ])),
        model,
        round,
      });
    } else {
      all.push({ backend: 'pytorch', model, skipped: torchMissing, round });
    }
  }
}

rmSync(workDir, { recursive: true, force: true });

// ---- the table -------------------------------------------------------------------------------------------
const MB = 1024 * 1024;
const fmt = (s: number | undefined): string => (s === undefined ? '—' : s < 10 ? s.toFixed(3) : s.toFixed(1));
const TASK_LABEL: Record<string, string> = {
  forward: 'forward (8×16, last-position logits)',
  atp: 'AtP: 2 fwd + 1 bwd to 3×L sites',
  relp: 'RelP (relp rules): 2 fwd + 1 bwd',
  'patch-fast': 'activation patching, fast',
  'patch-naive': 'activation patching, naive',
};

const MODEL_TITLE: Record<string, string> = {
  gpt2: 'GPT-2-small-shaped (12 × 768, vocab 50257)',
  pythia: 'Pythia-160m-shaped (12 × 768, vocab 50304)',
  smollm2: 'SmolLM2-135M-Instruct (GGUF Q4_1 dequantised to float32; 30 × 576, vocab 49152), IOI ioi-demo',
};
const TASK_LABEL_REAL: Record<string, string> = {
  forward: 'forward (8 prompts, last-position logits)',
};
const lines: string[] = [];
lines.push(
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.versions.node}; started ${started.toISOString()}`,
);
lines.push(
  `Settings: ${opt.reps} repetitions after ${opt.warmup} warm-up, medians in seconds; patching on ${opt['patch-layers']}-layer models of the same widths, patch-naive ${opt['naive-reps']} repetition(s) without warm-up.`,
);
for (const model of models)
  for (let round = 0; round < rounds; round++) {
    const runs = all.filter((r) => r.model === model && r.round === round);
    const torch = runs.find((r) => r.backend === 'pytorch');
    const cols = runs.map((r) => r.backend);
    lines.push('');
    lines.push(`### ${MODEL_TITLE[model] ?? model}${rounds > 1 ? `, round ${round + 1} of ${rounds}` : ''}`);
    lines.push('');
    const whole = runs.find((r) => r.backend === 'all');
    if (whole) {
      // A real model that is not in the cache: no table, the reason.
      lines.push(`${model}: ${whole.skipped}`);
      continue;
    }
    if (realNotes[model]) lines.push(`${realNotes[model]}\n`);
    lines.push(`| task | ${cols.join(' | ')} |`);
    lines.push(`|---|${cols.map(() => '---:').join('|')}|`);
    const tasks = [...new Set(runs.flatMap((r) => (r.results ?? []).map((t) => t.task)))];
    const med = (r: RunResult, task: string) => r.results?.find((t) => t.task === task)?.median;
    for (const task of tasks) {
      const tm = torch ? med(torch, task) : undefined;
      const layers = runs.flatMap((r) => r.results ?? []).find((t) => t.task === task)?.layers;
      const label = `${(isRealModel(model) ? TASK_LABEL_REAL[task] : undefined) ?? TASK_LABEL[task] ?? task}${task.startsWith('patch') ? ` (${layers} layers)` : ''}`;
      const cells = runs.map((r) => {
        const m = med(r, task);
        if (m === undefined) return r.skipped ? 'n/a' : '—';
        return r.backend === 'pytorch' || tm === undefined
          ? `${fmt(m)} s`
          : `${fmt(m)} s (${(m / tm).toFixed(2)}×)`;
      });
      lines.push(`| ${label} | ${cells.join(' | ')} |`);
    }
    const ratio = (a: string, b: string) =>
      runs.map((r) => {
        const x = med(r, a);
        const y = med(r, b);
        return x !== undefined && y !== undefined ? `${(x / y).toFixed(2)}` : '—';
      });
    // CPU time (user + system of the process, all its threads): less sensitive than wall time to other work on
    // shared cores, though spinning threads (OpenMP, OpenBLAS) count in it.
    for (const task of tasks.filter((t) => t === 'relp' || t === 'forward')) {
      const cm = (r: RunResult) => r.results?.find((t) => t.task === task)?.cpuMedian;
      const tc = torch ? cm(torch) : undefined;
      lines.push(
        `| ${task === 'relp' ? 'RelP' : 'forward'}: CPU time (user + sys) | ${runs
          .map((r) => {
            const c = cm(r);
            if (c === undefined) return '—';
            return r.backend === 'pytorch' || tc === undefined
              ? `${fmt(c)} s`
              : `${fmt(c)} s (${(c / tc).toFixed(2)}×)`;
          })
          .join(' | ')} |`,
      );
    }
    if (tasks.includes('relp') && tasks.includes('atp'))
      lines.push(`| RelP / AtP cost | ${ratio('relp', 'atp').join(' | ')} |`);
    if (tasks.includes('patch-naive') && tasks.includes('patch-fast')) {
      lines.push(`| patching naive / fast | ${ratio('patch-naive', 'patch-fast').join(' | ')} |`);
    }
    lines.push(
      `| peak tensor memory (tfjs numBytes) | ${runs
        .map((r) => {
          const p = Math.max(0, ...(r.results ?? []).map((t) => t.peakTensorBytes ?? 0));
          return r.backend === 'pytorch' || p === 0 ? '—' : `${(p / MB).toFixed(0)} MB`;
        })
        .join(' | ')} |`,
    );
    lines.push(
      `| peak process RSS | ${runs.map((r) => (r.maxRssBytes ? `${(r.maxRssBytes / MB).toFixed(0)} MB` : '—')).join(' | ')} |`,
    );
    lines.push(
      `| load avg (start → end) | ${runs.map((r) => (r.load ? `${r.load[0].toFixed(1)} → ${r.load[1].toFixed(1)}` : '—')).join(' | ')} |`,
    );
    for (const r of runs) if (r.skipped) lines.push(`\n${r.backend}: ${r.skipped}`);
    const nat = runs.find((r) => r.native)?.native;
    if (nat) lines.push(`\nnative: ${nat.blas}, ${nat.threads} threads`);
    if (torch?.torch) lines.push(`pytorch: ${torch.torch}, ${torch.threads} threads`);
    for (const r of runs) {
      if (!r.profile) continue;
      const total = r.profile.reduce((a, p) => a + p.ms, 0);
      const calls = r.profile.reduce((a, p) => a + p.calls, 0);
      lines.push(
        `\nprofile, ${r.backend}, one ${opt['profile-task'] === 'patch-fast' ? 'fast patching' : 'RelP'} run${r.profileWallSeconds ? ` (${r.profileWallSeconds.toFixed(2)} s under the profiler)` : ''} ` +
          `(kernel: ms, calls): ${r.profile
            .slice(0, 12)
            .map((p) => `${p.kernel} ${p.ms.toFixed(0)} (${p.calls})`)
            .join('; ')}; total ${total.toFixed(0)} ms, ${calls} kernel calls`,
      );
      if (r.profileMedian) {
        const t = r.profileMedian.reduce((a, p) => a + p.ms, 0);
        lines.push(
          `median-based (each kernel and shape's median time × calls, steadier under load): ${r.profileMedian
            .slice(0, 12)
            .map((p) => `${p.kernel} ${p.ms.toFixed(0)}`)
            .join('; ')}; total ${t.toFixed(0)} ms`,
        );
      }
      if (r.profileShapes) {
        lines.push(
          `by shape: ${r.profileShapes
            .slice(0, 12)
            .map((p) => `${p.kernel} ${p.ms.toFixed(0)} (${p.calls})`)
            .join('; ')}`,
        );
      }
    }
  }
// Per-round ratios (each backend / PyTorch of the same round) and their median.
if (rounds > 1 && !torchMissing) {
  lines.push('\n### Ratios to PyTorch per round (median of the rounds last)\n');
  for (const model of models) {
    const tasks = [
      ...new Set(all.filter((r) => r.model === model).flatMap((r) => (r.results ?? []).map((t) => t.task))),
    ];
    for (const backend of backends) {
      for (const task of tasks) {
        const ratios: number[] = [];
        for (let round = 0; round < rounds; round++) {
          const of = (b: string) =>
            all
              .find((r) => r.model === model && r.round === round && r.backend === b)
              ?.results?.find((t) => t.task === task)?.median;
          const x = of(backend);
          const y = of('pytorch');
          if (x !== undefined && y !== undefined) ratios.push(x / y);
        }
        if (ratios.length === 0) continue;
        const sorted = [...ratios].sort((a, b) => a - b);
        const mid = sorted.length / 2;
        const median = sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
        lines.push(
          `- ${model}, ${backend}, ${task}: ${ratios.map((r) => `${r.toFixed(2)}×`).join(', ')} → median **${median.toFixed(2)}×**`,
        );
      }
    }
  }
}
console.log(lines.join('\n'));
if (opt.json) writeFileSync(opt.json, `${JSON.stringify({ started, runs: all }, null, 2)}\n`);
