import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePath } from '@relp/testing';
import { describe, expect, it } from 'vitest';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** `relp …` as a user runs it: a child process, its output as the bytes a terminal would get. */
function relp(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', 'packages/cli/src/bin.ts', ...args],
    { cwd: repo, encoding: 'utf8', env: { ...process.env, RELP_BACKEND: 'cpu' }, timeout: 60_000 },
  );
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Raw control characters a terminal acts on (line breaks and tabs aside), and U+FFFD from a lone surrogate. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the test
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\ufffd]/;

const tmp = () => mkdtempSync(join(tmpdir(), 'relp-printable-'));

/** A GGUF file (version 3) whose only metadata is general.architecture = `arch`. */
function ggufWithArchitecture(arch: string): Uint8Array {
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(b.length));
    return Buffer.concat([len, b]);
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  const STRING = 8;
  return Buffer.concat([
    Buffer.from('GGUF'),
    u32(3),
    u64(0), // tensors
    u64(1), // metadata entries
    str('general.architecture'),
    u32(STRING),
    str(arch),
  ]);
}

describe('untrusted strings are printed with their control characters escaped', () => {
  it("a GGUF architecture name with terminal escapes: the error shows them, the terminal doesn't act on them", () => {
    const file = join(tmp(), 'evil.gguf');
    writeFileSync(file, ggufWithArchitecture('llama\u001b[2J\u0007\u009b31m'));
    const r = relp('attribute', '--model', file, '--task', 'ioi-demo', '--method', 'relp', '--json');
    expect(r.code).toBe(2);
    expect(r.err).toContain('architecture "llama\\u001b[2J\\u0007\\u009b31m" is not supported');
    expect(r.err + r.out).not.toMatch(RAW_CONTROL);
  }, 60_000);

  it('a JSONL line with a NUL byte and ESC: the parse error quotes it escaped', () => {
    const data = join(tmp(), 'pairs.jsonl');
    writeFileSync(data, '\u0000\u001b[2J{"clean": "a"}\n');
    const r = relp(
      'attribute',
      '--model',
      fixturePath('models', 'gpt2-a'),
      '--data',
      data,
      '--method',
      'relp',
      '--json',
    );
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/pairs\.jsonl:1: not valid JSON/);
    expect(r.err).toContain('\\u0000');
    expect(r.err + r.out).not.toMatch(RAW_CONTROL);
  }, 60_000);

  it('a model folder named with escapes: progress lines escape it, the JSON result still holds the real path', () => {
    const folder = join(tmp(), 'model\u001b]0;pwned\u0007\u007f');
    cpSync(fixturePath('models', 'gpt2-a'), folder, { recursive: true });
    const r = relp(
      'attribute',
      '--model',
      folder,
      '--data',
      fixturePath('cli', 'pairs-ids.jsonl'),
      '--method',
      'atp',
      '--json',
    );
    expect(r.code).toBe(0);
    expect(r.err).toContain('model\\u001b]0;pwned\\u0007\\u007f');
    expect(r.err + r.out).not.toMatch(RAW_CONTROL);
    // The escapes are JSON's: the output parses to the path as it is on disk.
    expect(JSON.parse(r.out).provenance.model.path).toBe(folder);
  }, 60_000);

  it("an argument commander refuses is echoed escaped (not a RelpError: the CLI's output escapes it)", () => {
    const r = relp('attribute', '--method', 'relp\u001b[2J\u0007\u009b', '--task', 'ioi-demo');
    expect(r.code).toBe(2);
    expect(r.err).toContain("argument 'relp\\u001b[2J\\u0007\\u009b' is invalid");
    expect(r.err + r.out).not.toMatch(RAW_CONTROL);
  }, 60_000);
});
