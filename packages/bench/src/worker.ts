// One benchmark process: one tfjs backend, one model family. Prints `RESULT {json}` as its last line.
// Run through main.ts (`pnpm bench`), which starts one of these per backend and model so that each
// process's peak RSS belongs to that backend and model only.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { nativeBackendLoader, nativeInfo, setNativeThreads } from '@relp/backend-native';
import { webgpuNodeBackendLoader } from '@relp/backend-webgpu-node';
import {
  attribute,
  batchTokens,
  type LanguageModel,
  logitDiff,
  makePairBatch,
  type PairBatch,
  RunContext,
  Site,
} from '@relp/core';
import { loadModel } from '@relp/loader';
import { nodeLoadOptions } from '@relp/loader/node';
import { presetByName } from '@relp/lrp-rules';
import { GPT2_SMALL_CONFIG, randomGpt2Model } from '@relp/models-gpt2';
import { llamaFamily } from '@relp/models-llama';
import { PYTHIA_PRESETS, randomPythiaModel } from '@relp/models-pythia';
import * as tf from '@tensorflow/tfjs-core';
import type { RealWorkload } from './real.js';
import { makePairs, type Workload } from './workload.js';

const { values: opt } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' },
    model: { type: 'string', default: 'gpt2' },
    tasks: { type: 'string', default: 'forward,atp,relp,patch-fast,patch-naive' },
    reps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    'patch-layers': { type: 'string', default: '12' },
    /** Repetitions of patch-naive, without warm-up (one full forward pass per patch: minutes at 12 layers). */
    'naive-reps': { type: 'string', default: '1' },
    prompts: { type: 'string', default: '8' },
    tokens: { type: 'string', default: '16' },
    'diff-pos': { type: 'string', default: '8' },
    profile: { type: 'boolean', default: false },
    /** What the profile covers: one RelP attribution, or one fast activation patching run. */
    'profile-task': { type: 'string', default: 'relp' },
    /** A real model's workload (real.ts's JSON, written by main.ts): the GGUF file and the token ids. */
    workload: { type: 'string' },
    threads: { type: 'string', default: '2' },
  },
});

const backend = opt.backend!;
if (backend === 'native') {
  const p = await nativeBackendLoader.probe();
  if (!p.ok) {
    console.log(`RESULT ${JSON.stringify({ backend, skipped: p.reason })}`);
    process.exit(0);
  }
  await nativeBackendLoader.register();
  setNativeThreads(Number(opt.threads));
} else if (backend === 'webgpu') {
  // Named on the command line, so a software adapter is accepted; its name goes into the result's notes.
  const loader = webgpuNodeBackendLoader();
  const p = await loader.probe({ explicit: true });
  if (!p.ok) {
    console.log(`RESULT ${JSON.stringify({ backend, skipped: p.reason })}`);
    process.exit(0);
  }
  process.stderr.write(`  [webgpu] ${p.detail ?? ''}\n`);
  await loader.register();
} else if (backend === 'wasm') {
  await import('@tensorflow/tfjs-backend-wasm');
} else {
  await import('@tensorflow/tfjs-backend-cpu');
}
if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to start`);
await tf.ready();

const w: Workload = {
  prompts: Number(opt.prompts),
  tokens: Number(opt.tokens),
  diffPos: Number(opt['diff-pos']),
  seed: 1234,
};
const reps = Number(opt.reps);
const warmup = Number(opt.warmup);
const patchLayers = Number(opt['patch-layers']);
const tasks = opt.tasks!.split(',');

const real: RealWorkload | undefined = opt.workload
  ? (JSON.parse(readFileSync(opt.workload, 'utf8')) as RealWorkload)
  : undefined;

async function build(layers?: number): Promise<LanguageModel> {
  if (real) {
    if (layers !== undefined) throw new Error('patching on a real model runs on the whole model');
    const loaded = await loadModel(real.gguf, { ...nodeLoadOptions(process.env), families: [llamaFamily] });
    return loaded.model;
  }
  if (opt.model === 'gpt2') {
    return randomGpt2Model(layers ? { ...GPT2_SMALL_CONFIG, n_layer: layers } : 'small', 1);
  }
  const c = PYTHIA_PRESETS['pythia-160m'];
  return randomPythiaModel(layers ? { ...c, nLayers: layers } : c, 1);
}

const SITES = [Site.ResidPre, Site.AttnOut, Site.MlpOut];

interface TaskResult {
  task: string;
  layers: number;
  median: number;
  times: number[];
  /** Median CPU time of the process (user + system, all threads) per repetition, seconds. */
  cpuMedian: number;
  peakTensorBytes: number;
  forwardEquivalents?: number;
  forwardPasses?: number;
  backwardPasses?: number;
  check?: number;
}

async function time(
  name: string,
  layers: number,
  run: () => Promise<{ peak: number; cost?: { fwd: number; passes: number; bwd: number }; check?: number }>,
  repeat = { reps, warmup },
): Promise<TaskResult> {
  const { reps, warmup } = repeat;
  const times: number[] = [];
  const cpu: number[] = [];
  let last: Awaited<ReturnType<typeof run>> | undefined;
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    last = await run();
    const dt = (performance.now() - t0) / 1000;
    const c1 = process.cpuUsage(c0);
    if (i >= warmup) {
      times.push(dt);
      cpu.push((c1.user + c1.system) / 1e6);
    }
    process.stderr.write(
      `  [${backend} ${opt.model}] ${name} ${i < warmup ? 'warm-up' : `rep ${i - warmup + 1}`}: ${dt.toFixed(3)} s\n`,
    );
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return {
    task: name,
    layers,
    median: median(times),
    times,
    cpuMedian: median(cpu),
    peakTensorBytes: last!.peak,
    ...(last!.cost
      ? {
          forwardEquivalents: last!.cost.fwd,
          forwardPasses: last!.cost.passes,
          backwardPasses: last!.cost.bwd,
        }
      : {}),
    ...(last!.check !== undefined ? { check: last!.check } : {}),
  };
}

const t0 = performance.now();
const model = await build();
const buildSeconds = (performance.now() - t0) / 1000;
const batch: PairBatch = real
  ? makePairBatch(real.pairs, { dims: model.dims, padId: real.padId })
  : makePairBatch(makePairs(w, model.dims.vocabSize), { dims: model.dims });
const results: TaskResult[] = [];
const L = model.dims.nLayers;
const lastPos = batch.seqLen - 1;

for (const task of tasks) {
  if (task === 'forward') {
    results.push(
      await time('forward', L, async () => {
        const tokens = batchTokens(batch, 'clean');
        const ctx = new RunContext({});
        const logits = model.forward({ tokens }, ctx, { readout: [...batch.lastPositions] });
        const m = logitDiff.compute(logits, batch);
        const peak = tf.memory().numBytes;
        const v = (await m.data())[0]!;
        tf.dispose([tokens, logits, m]);
        ctx.dispose();
        return { peak, check: v };
      }),
    );
  } else if (task === 'atp' || task === 'relp') {
    results.push(
      await time(task, L, async () => {
        const r = await attribute(model, batch, {
          method: 'atp',
          sites: SITES,
          ...(task === 'relp' ? { rules: presetByName('relp') } : {}),
        });
        return {
          peak: r.cost.peakTensorBytes,
          cost: { fwd: r.cost.forwardEquivalents, passes: r.cost.forwardPasses, bwd: r.cost.backwardPasses },
          check: (r.scores.mlp_out as number[][])[L - 1]![lastPos]!,
        };
      }),
    );
  } else if (task === 'patch-fast' || task === 'patch-naive') {
    // On a real model, patching runs on the whole model (it is opt-in: minutes a repetition).
    const small = real || patchLayers === L ? model : await build(patchLayers);
    const pl = real ? L : patchLayers;
    const naive = task === 'patch-naive';
    try {
      results.push(
        await time(
          task,
          pl,
          async () => {
            const r = await attribute(small, batch, {
              method: 'activation-patching',
              sites: SITES,
              patchingStrategy: task === 'patch-fast' ? 'fast' : 'naive',
            });
            return {
              peak: r.cost.peakTensorBytes,
              cost: {
                fwd: r.cost.forwardEquivalents,
                passes: r.cost.forwardPasses,
                bwd: r.cost.backwardPasses,
              },
              check: (r.scores.mlp_out as number[][])[pl - 1]![lastPos]!,
            };
          },
          naive ? { reps: Number(opt['naive-reps']), warmup: 0 } : undefined,
        ),
      );
    } finally {
      if (small !== model) (small as { dispose?: () => void }).dispose?.();
    }
  } else {
    throw new Error(`unknown task ${task}`);
  }
}

let profile: { kernel: string; ms: number; calls: number }[] | undefined;
let profileShapes: { kernel: string; ms: number; calls: number }[] | undefined;
let profileMedian: { kernel: string; ms: number; calls: number }[] | undefined;
let profileWallSeconds: number | undefined;
if (opt.profile) {
  const p0 = performance.now();
  const profileTask = opt['profile-task'];
  if (profileTask !== 'relp' && profileTask !== 'patch-fast') {
    throw new Error(`--profile-task is relp or patch-fast, not ${profileTask}`);
  }
  const info = await tf.profile(async () => {
    const r = await attribute(
      model,
      batch,
      profileTask === 'relp'
        ? { method: 'atp', sites: SITES, rules: presetByName('relp') }
        : { method: 'activation-patching', sites: SITES, patchingStrategy: 'fast' },
    );
    void r;
  });
  profileWallSeconds = (performance.now() - p0) / 1000;
  const agg = new Map<string, { ms: number; calls: number }>();
  // Matrix products and element-wise kernels by input shapes, too: which of them the time goes to.
  const byShape = new Map<string, { ms: number; calls: number }>();
  const add = (m: Map<string, { ms: number; calls: number }>, key: string, ms: number) => {
    const a = m.get(key) ?? { ms: 0, calls: 0 };
    a.ms += ms;
    a.calls++;
    m.set(key, a);
  };
  // Under load a kernel's time is sometimes that of the other processes that ran meanwhile: the median of
  // each (kernel, input shapes) times its calls, summed per kernel, is a steadier estimate.
  const perShape = new Map<string, { name: string; times: number[] }>();
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const key = `${k.name}(${k.inputShapes.map((s) => `[${s}]`).join(',')})`;
    const e = perShape.get(key) ?? { name: k.name, times: [] };
    e.times.push(ms);
    perShape.set(key, e);
    add(agg, k.name, ms);
    const attrs = (k as { extraInfo?: string }).extraInfo ?? '';
    add(byShape, `${k.name}(${k.inputShapes.map((s) => `[${s}]`).join(',')})${attrs ? ` ${attrs}` : ''}`, ms);
  }
  const sorted = (m: Map<string, { ms: number; calls: number }>) =>
    [...m.entries()].map(([kernel, v]) => ({ kernel, ...v })).sort((a, b) => b.ms - a.ms);
  profile = sorted(agg);
  const robust = new Map<string, { ms: number; calls: number }>();
  for (const { name, times } of perShape.values()) {
    const m = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
    const a = robust.get(name) ?? { ms: 0, calls: 0 };
    a.ms += m * times.length;
    a.calls += times.length;
    robust.set(name, a);
  }
  profileMedian = sorted(robust);
  profileShapes = sorted(byShape).slice(0, 25);
}

const usage = process.resourceUsage();
console.log(
  `RESULT ${JSON.stringify({
    backend,
    model: opt.model,
    layers: L,
    buildSeconds,
    maxRssBytes: usage.maxRSS * 1024,
    native: backend === 'native' ? nativeInfo() : undefined,
    results,
    profile,
    profileShapes,
    profileMedian,
    profileWallSeconds,
  })}`,
);
