/**
 * The API reference (scripts/api.mjs, TypeDoc): it covers every published package with a description, links
 * back to the guides, and no page links to a file or page that does not exist, to a file outside the repository,
 * or to a web address TypeDoc made up from a file name in a comment.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const app = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(app, '..', '..');
/** Hosts the reference may link out to; a new one is added here on purpose. */
const HOSTS = new Set([
  'typedoc.org',
  'huggingface.co',
  'www.npmjs.com',
  'v8.dev',
  'github.com',
  'developer.mozilla.org',
]);

/** Published packages: not private, with a TypeScript "source" export. */
function published(): string[] {
  return readdirSync(join(repo, 'packages'))
    .map((d) => join(repo, 'packages', d, 'package.json'))
    .filter(existsSync)
    .map((f) => JSON.parse(readFileSync(f, 'utf8')))
    .filter(
      (p) =>
        !p.private &&
        Object.values(p.exports ?? {}).some(
          (e) =>
            typeof (e as { source?: string }).source === 'string' &&
            (e as { source: string }).source.endsWith('.ts'),
        ),
    )
    .map((p) => p.name as string);
}

function htmlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? htmlFiles(p) : n.endsWith('.html') ? [p] : [];
  });
}

describe('API reference', () => {
  let site: string;
  let api: string;
  beforeAll(() => {
    site = mkdtempSync(join(tmpdir(), 'relp-api-test-'));
    api = join(site, 'api');
    execFileSync('node', [join(app, 'scripts', 'api.mjs'), api], { cwd: app, stdio: 'inherit' });
  }, 600_000);
  afterAll(() => {
    if (site) rmSync(site, { recursive: true, force: true });
  });

  it('has a described module page for every published package', () => {
    const names = published();
    for (const must of [
      '@relp/core',
      '@relp/models-gemma',
      '@relp/sae',
      '@relp/provision',
      '@relp/cli',
      '@relp/web',
    ]) {
      expect(names).toContain(must);
    }
    const index = readFileSync(join(api, 'index.html'), 'utf8');
    for (const name of names) {
      const page = join(api, 'modules', `${name.replace(/[@/]/g, '_')}.html`);
      expect(existsSync(page), `${name}: ${relative(api, page)}`).toBe(true);
      const text = readFileSync(page, 'utf8');
      const summary = /<div class="tsd-comment tsd-typography"><p>(.{20,}?)<\/p>/s.exec(text);
      expect(summary, `${name} has no description`).not.toBeNull();
      expect(index).toContain(`<a href="modules/${name.replace(/[@/]/g, '_')}.html">${name}</a>`);
    }
  });

  it('links back to the guides', () => {
    const index = readFileSync(join(api, 'index.html'), 'utf8');
    expect(index).toContain('href="../quick-start.html"');
    expect(index).toContain('href="../library.html"');
    const deep = readFileSync(join(api, 'modules', '_relp_core.html'), 'utf8');
    expect(deep).toContain('href="../../index.html"');
  });

  it('links only to pages, files and anchors that exist, and to known hosts', () => {
    const files = htmlFiles(api);
    expect(files.length).toBeGreaterThan(100);
    const ids = new Map<string, Set<string>>();
    const idsOf = (file: string) => {
      let set = ids.get(file);
      if (!set) {
        set = new Set([...readFileSync(file, 'utf8').matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]!));
        ids.set(file, set);
      }
      return set;
    };
    const bad: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/\b(?:href|src)="([^"]*)"/g)) {
        const link = m[1]!.replaceAll('&amp;', '&');
        const where = `${relative(api, file)}: ${link}`;
        if (/method\.md/i.test(link) && !link.startsWith('.')) bad.push(`${where} (a file name, not a page)`);
        if (link === '' || link === '#') continue;
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) {
          const url = new URL(link);
          if (url.protocol !== 'https:' || !HOSTS.has(url.hostname)) bad.push(`${where} (unknown host)`);
          continue;
        }
        const [path, anchor] = link.split('#') as [string, string | undefined];
        const target = path === '' ? file : resolve(dirname(file), decodeURIComponent(path));
        // Links out of the reference go to the site's own pages, which are apps/docs/*.html.
        const onDisk =
          target.startsWith(api + sep) || target === api ? target : join(app, relative(site, target));
        if (!existsSync(onDisk)) {
          bad.push(`${where} (no such file)`);
          continue;
        }
        if (anchor && onDisk.endsWith('.html') && onDisk.startsWith(api) && !idsOf(onDisk).has(anchor)) {
          bad.push(`${where} (no such anchor)`);
        }
      }
    }
    expect(bad.slice(0, 40)).toEqual([]);
  });
});
