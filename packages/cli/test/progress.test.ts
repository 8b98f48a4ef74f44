import { describe, expect, it } from 'vitest';
import type { CliIo } from '../src/io.js';
import { printableIo } from '../src/printable.js';
import { ProgressBar } from '../src/progress.js';
import { shellQuote } from '../src/provenance.js';
import { parseSites } from '../src/sites.js';

function io(isTTY: boolean): { io: CliIo; text: () => string } {
  let err = '';
  const stderr = Object.assign(
    {
      write: (s: string) => {
        err += s;
        return true;
      },
      isTTY,
      columns: 100,
      cursorTo: () => true,
      clearLine: () => true,
      moveCursor: () => true,
      on: () => stderr,
      removeListener: () => stderr,
    },
    {},
  );
  return {
    io: { stdout: { write: () => true }, stderr, env: {}, cwd: '.', argv: [] },
    text: () => err,
  };
}

describe('progress bars', () => {
  it('draw counts on a terminal, one bar per phase', () => {
    const t = io(true);
    const p = new ProgressBar(t.io, false);
    expect(p.enabled).toBe(true);
    const on = p.labelled('atp');
    on({ phase: 'patches', done: 0, total: 4 });
    on({ phase: 'patches', done: 4, total: 4 });
    p.stop();
    expect(t.text()).toContain('atp: patches');
    expect(t.text()).toContain('4/4');
  });

  it('stay silent with --quiet and when stderr is not a terminal', () => {
    for (const [tty, quiet] of [
      [false, false],
      [true, true],
    ] as const) {
      const t = io(tty);
      const p = new ProgressBar(t.io, quiet);
      expect(p.enabled).toBe(false);
      p.update({ phase: 'x', done: 1, total: 2 });
      expect(t.text()).toBe('');
    }
  });

  it("behind the CLI's printable output: the bar's cursor escapes pass, a label's control characters do not", () => {
    const t = io(true);
    const p = new ProgressBar(printableIo(t.io), false);
    p.labelled('model\u001b[2J')({ phase: 'load', done: 1, total: 2 });
    p.stop();
    expect(t.text()).toContain('model\\u001b[2J: load');
    expect(t.text()).not.toContain('\u001b[2J');
    expect(t.text()).toContain('\u001b[?25l'); // the bar hides the cursor: its own escape reaches the terminal
  });
});

describe('flag parsing', () => {
  it('gives z heads and mlp_post neurons by default, and site:granularity overrides', () => {
    expect(parseSites('resid_pre, z,mlp_post,z:position')).toEqual([
      { site: 'resid_pre', granularity: 'position' },
      { site: 'z', granularity: 'head' },
      { site: 'mlp_post', granularity: 'neuron' },
      { site: 'z', granularity: 'position' },
    ]);
    expect(() => parseSites('attn')).toThrow(/unknown site 'attn'/);
    expect(() => parseSites('resid_pre:head')).toThrow(
      /unknown granularity 'head' for resid_pre: use position$/,
    );
    expect(() => parseSites('z:neuron')).toThrow(/use position or head$/);
  });

  it('records a command line that a shell reads back verbatim', () => {
    expect(shellQuote('--model')).toBe('--model');
    expect(shellQuote("it's a b")).toBe(`'it'\\''s a b'`);
  });
});
