/** The benchmark's data: deterministic prompts shared by the tfjs worker and the PyTorch script. */
export interface Workload {
  readonly prompts: number;
  readonly tokens: number;
  /** Position of the one token where clean and corrupt differ (as the S2 name in IOI). */
  readonly diffPos: number;
  readonly seed: number;
}

export interface WorkloadPair {
  clean: number[];
  corrupt: number[];
  answer: number;
  wrong: number;
}

/** mulberry32: the same sequence in TypeScript and in bench_torch.py. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makePairs(w: Workload, vocab: number): WorkloadPair[] {
  const r = mulberry32(w.seed);
  const tok = (): number => Math.floor(r() * vocab);
  const out: WorkloadPair[] = [];
  for (let i = 0; i < w.prompts; i++) {
    const clean = Array.from({ length: w.tokens }, tok);
    const corrupt = [...clean];
    corrupt[w.diffPos] = (clean[w.diffPos]! + 1 + Math.floor(r() * (vocab - 1))) % vocab;
    const answer = tok();
    const wrong = (answer + 1) % vocab;
    out.push({ clean, corrupt, answer, wrong });
  }
  return out;
}
