import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { badInput } from '@relp/core/errors';

function tempSibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now().toString(36)}`);
}

/** Refuses to overwrite an existing path unless force is set (checked before any work is done). */
export function checkWritable(path: string, force: boolean, what: string): void {
  if (existsSync(path) && !force) {
    throw badInput(`${what} ${path} already exists; pass --force to replace it`, { path });
  }
}

/**
 * Writes a file atomically: to a temporary sibling first, then renamed over the target, so a crash never
 * leaves a half-written result.
 */
export async function writeFileAtomic(path: string, content: string, force: boolean): Promise<void> {
  const target = resolve(path);
  checkWritable(target, force, 'output file');
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempSibling(target);
  try {
    await writeFile(tmp, content);
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Writes a folder of files atomically: everything goes to a temporary sibling folder which replaces the target
 * in one rename (an existing target, with --force, is moved aside first and removed after).
 */
export async function writeFolderAtomic(
  path: string,
  files: Readonly<Record<string, string | Uint8Array>>,
  force: boolean,
): Promise<void> {
  const target = resolve(path);
  checkWritable(target, force, 'output folder');
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempSibling(target);
  try {
    await mkdir(tmp);
    for (const [name, content] of Object.entries(files)) {
      const p = join(tmp, name);
      if (!p.startsWith(tmp)) throw badInput(`refusing to write outside the output folder: ${name}`);
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, content);
    }
    let old: string | undefined;
    if (existsSync(target)) {
      old = tempSibling(`${target}-old`);
      await rename(target, old);
    }
    await rename(tmp, target);
    if (old) await rm(old, { recursive: true, force: true });
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/**
 * JSON with non-finite numbers as strings ("NaN"), indented, but with arrays of plain numbers kept on one line
 * (score grids stay readable and small).
 */
export function toJson(value: unknown): string {
  const text = JSON.stringify(
    value,
    (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v),
    1,
  );
  return `${text.replace(/\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]/g, (_, body: string) => `[${body.replace(/\s+/g, '')}]`)}\n`;
}
