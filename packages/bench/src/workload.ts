import { seededRng } from '@relp/tasks';

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

export function makePairs(w: Workload, vocab: number): WorkloadPair[] {
  // The mulberry32 stream, which bench_torch.py reproduces number for number.
  const r = seededRng(w.seed);
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
