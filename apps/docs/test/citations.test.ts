// The method's definitions live in docs/method.md: every citation of it must name a section that exists, and no
// file may send a reader to a file outside the repository or to an internal issue number instead.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const ROOTS = ['packages', 'apps', 'docs', 'tools', 'scripts', 'README.md'];
const SKIP_DIRS = new Set([
  'node_modules',
  'dist',
  'generated',
  'public',
  'test-artifacts',
  '.turbo',
  'build',
]);
const EXTENSIONS = /\.(ts|tsx|mts|mjs|js|md|html|py|sh|css)$/;

function files(path: string): string[] {
  const st = statSync(path);
  if (st.isFile()) return EXTENSIONS.test(path) ? [path] : [];
  const out: string[] = [];
  for (const name of readdirSync(path)) {
    if (SKIP_DIRS.has(name) || name.startsWith('.')) continue;
    out.push(...files(join(path, name)));
  }
  return out;
}

const all = ROOTS.flatMap((r) => files(join(repo, r))).filter((f) => f !== fileURLToPath(import.meta.url));

/** Section numbers of docs/method.md: "## 7. …" → 7, "### 7.2 …" → 7.2. */
function sections(): Set<string> {
  const text = readFileSync(join(repo, 'docs', 'method.md'), 'utf8');
  const out = new Set<string>();
  for (const m of text.matchAll(/^#{2,3} (\d+(?:\.\d+)?)\.? /gm)) out.add(m[1]!);
  return out;
}

// Built from pieces so that this file does not match itself.
const OUTSIDE_FILE = new RegExp(['METHOD', 'md'].join('\\.'));
const ISSUE_NUMBER = new RegExp(['\\bissues?[ -]#?\\d', '\\(#\\d+\\)', '\\bPR #?\\d'].join('|'), 'i');

describe('citations of the method', () => {
  it('finds the sources to check', () => {
    expect(all.length).toBeGreaterThan(100);
    expect(sections().size).toBeGreaterThan(10);
  });

  it('cites no file outside the repository and no issue number', () => {
    const bad: string[] = [];
    for (const f of all) {
      readFileSync(f, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (OUTSIDE_FILE.test(line) || ISSUE_NUMBER.test(line)) {
            bad.push(`${relative(repo, f)}:${i + 1}: ${line.trim()}`);
          }
        });
    }
    expect(bad).toEqual([]);
  });

  it('cites only sections of docs/method.md that exist', () => {
    const known = sections();
    const bad: string[] = [];
    for (const f of all) {
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(/docs\/method\.md`?((?:[ ,–-]*(?:and )?§\d+(?:\.\d+)?)*)/g)) {
        for (const s of m[1]!.matchAll(/§(\d+(?:\.\d+)?)/g)) {
          if (!known.has(s[1]!)) bad.push(`${relative(repo, f)}: §${s[1]}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });
});
