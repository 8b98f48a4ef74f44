import type { Progress } from '@relp/core';
import cliProgress from 'cli-progress';
import type { CliIo } from './io.js';
import { printableText, rawStream } from './printable.js';

/**
 * Progress bars (cli-progress) with counts and ETA, one per phase of a loop (patches, IG steps, prompts,
 * thresholds). Silent with --quiet and when stderr is not a terminal, so logs and pipes stay clean. The bar's own
 * cursor escapes go to the raw stream; its labels (which may hold a model's or file's names) are made printable.
 */
export class ProgressBar {
  private bar: cliProgress.SingleBar | undefined;
  private phase = '';
  readonly enabled: boolean;

  constructor(
    private readonly io: CliIo,
    quiet: boolean,
    private readonly prefix = '',
  ) {
    this.enabled = !quiet && io.stderr.isTTY === true && io.env.RELP_NO_PROGRESS === undefined;
  }

  /** A handler for the engine's onProgress. */
  readonly update = (p: Progress): void => {
    if (!this.enabled) return;
    if (p.phase !== this.phase || !this.bar) {
      this.stop();
      this.phase = p.phase;
      this.bar = new cliProgress.SingleBar(
        {
          stream: rawStream(this.io.stderr) as unknown as NodeJS.WritableStream,
          format: `${this.prefix}{phase} [{bar}] {value}/{total} | ETA {eta_formatted} | {duration_formatted}`,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 20,
          fps: 10,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(p.total, p.done, { phase: printableText(p.phase).padEnd(12) });
    }
    this.bar.setTotal(p.total);
    this.bar.update(p.done);
    if (p.done >= p.total) this.stop();
  };

  /** A child reporter whose phases carry a label ("atp: …"). */
  labelled(label: string): (p: Progress) => void {
    return (p) => this.update({ ...p, phase: `${label}: ${p.phase}` });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
    this.phase = '';
  }
}
