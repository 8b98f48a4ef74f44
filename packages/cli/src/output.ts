import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { badInput } from '@relp/core/errors';
import { type ReplaceHooks, recoverOutput, replaceFile, replaceFolder, replaceNames } from './replace.js';

/** The nearest part of `path` that exists (the path itself, or a parent). */
function nearestExisting(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

/**
 * Checks, before any work is done, that the output can be written: an existing target only with force and only
 * of the kind wanted (a file for a file, a folder for a folder), and a parent that is a folder this process can
 * write in. All of these are the user's to fix: bad input, never an internal error after the run.
 */
export function checkWritable(path: string, force: boolean, what: string): void {
  const target = resolve(path);
  recoverOutput(target); // a run killed while replacing this output left it aside
  const wantFolder = what.endsWith('folder');
  if (existsSync(target)) {
    if (!force) throw badInput(`${what} ${path} already exists; pass --force to replace it`, { path });
    const isDir = statSync(target).isDirectory();
    if (isDir !== wantFolder) {
      throw badInput(
        `${what} ${path} exists and is ${isDir ? 'a folder' : 'not a folder'}; choose another path`,
        {
          path,
        },
      );
    }
  }
  const parent = nearestExisting(dirname(target));
  if (!statSync(parent).isDirectory()) {
    throw badInput(`cannot write ${what} ${path}: ${parent} is a file, not a folder`, { path });
  }
  try {
    accessSync(parent, constants.W_OK | constants.X_OK);
  } catch {
    throw badInput(`cannot write ${what} ${path}: no permission to write in ${parent}`, { path });
  }
}

/** File-system errors a user can fix (permissions, a full or read-only disk) as bad input, not as a bug. */
function asBadInput(e: unknown, what: string, path: string): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  const fixable = [
    'EACCES',
    'EPERM',
    'EROFS',
    'ENOSPC',
    'EDQUOT',
    'ENOTDIR',
    'EISDIR',
    'EEXIST',
    'ENOTEMPTY',
  ];
  if (code !== undefined && fixable.includes(code)) {
    return badInput(`cannot write ${what} ${path}: ${code} (${(e as Error).message})`, { path, code });
  }
  return e;
}

/**
 * Writes a file atomically: to a temporary sibling first, then in place of the target in one step, so a crash
 * never leaves a half-written result (see replace.ts).
 */
export async function writeFileAtomic(path: string, content: string, force: boolean): Promise<void> {
  const target = resolve(path);
  checkWritable(target, force, 'output file');
  const tmp = replaceNames(target).temp;
  try {
    await mkdir(dirname(target), { recursive: true });
    await writeFile(tmp, content);
    await replaceFile(tmp, target, force, 'output file');
  } catch (e) {
    await rm(tmp, { force: true });
    throw asBadInput(e, 'output file', path);
  }
}

/**
 * Writes a folder of files atomically: everything goes to a temporary sibling folder which then replaces the
 * target; a run killed meanwhile, or another run writing the same folder, loses neither the old nor the new
 * output (see replace.ts). `hooks` are for tests.
 */
export async function writeFolderAtomic(
  path: string,
  files: Readonly<Record<string, string | Uint8Array>>,
  force: boolean,
  hooks: ReplaceHooks = {},
): Promise<void> {
  const target = resolve(path);
  checkWritable(target, force, 'output folder');
  const names = replaceNames(target);
  const tmp = names.temp;
  try {
    await mkdir(dirname(target), { recursive: true });
    await mkdir(tmp);
    for (const [name, content] of Object.entries(files)) {
      const p = join(tmp, name);
      if (!p.startsWith(tmp)) throw badInput(`refusing to write outside the output folder: ${name}`);
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, content);
    }
    await hooks.afterTemp?.();
    await replaceFolder(tmp, target, names, force, 'output folder', hooks);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw asBadInput(e, 'output folder', path);
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
