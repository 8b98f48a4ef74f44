// API reference with TypeDoc into dist/api/ (or the folder given as the first argument): every published package
// of the workspace (not private, with a TypeScript "source" export), each export of it an entry point, each
// described by its README's first paragraph, with links back to the guides.

import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Application, Comment } from 'typedoc';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const out = process.argv[2] ?? join(repo, 'apps', 'docs', 'dist', 'api');
const tsconfig = join(repo, 'tsconfig.json');
/** Links to the guides are written under this address and made relative to each page once it is written. */
const SITE = 'https://relp-site.invalid/';
/** Links to the reference's own pages from the generated README, made relative the same way. */
const API = 'https://relp-api.invalid/';

/** The packages a project outside the repository can depend on, with the entry points their exports name. */
export function publishedPackages() {
  const root = join(repo, 'packages');
  return readdirSync(root)
    .filter((d) => existsSync(join(root, d, 'package.json')))
    .map((d) => {
      const pkg = JSON.parse(readFileSync(join(root, d, 'package.json'), 'utf8'));
      const entries = Object.values(pkg.exports ?? {})
        .map((e) => (typeof e === 'string' ? e : e?.source))
        .filter((f) => typeof f === 'string' && f.endsWith('.ts'))
        .map((f) => join(root, d, f));
      return {
        dir: join(root, d),
        name: pkg.name,
        private: pkg.private === true,
        entries,
        description: pkg.description,
      };
    })
    .filter((p) => !p.private && p.entries.length > 0);
}

/** The README's first paragraph after the title (Markdown without relative links), unless it introduces a list. */
function readmeParagraph(p) {
  const file = join(p.dir, 'README.md');
  if (!existsSync(file)) return '';
  const first = readFileSync(file, 'utf8')
    .split(/\n\s*\n/)
    .map((s) => s.trim())
    .find((s) => s && !s.startsWith('#') && !s.startsWith('```') && !s.startsWith('|') && !s.startsWith('-'));
  if (!first || first.endsWith(':')) return '';
  // A relative link would point into the repository, not into the site: keep its text.
  return first.replace(/\[([^\]]*)\]\((?!https?:)[^)]*\)/g, '$1').replace(/\s*\n\s*/g, ' ');
}

/** One line for the index (package.json's description, else the README's paragraph). */
const summary = (p) => p.description || readmeParagraph(p);

/** The module page's description: the one line, then the README's first paragraph when it says more. */
function description(p) {
  const para = readmeParagraph(p);
  return [p.description, para].filter((t, i, all) => t && all.indexOf(t) === i).join('\n\n');
}

const common = {
  tsconfig,
  skipErrorChecking: true,
  disableSources: true,
  excludePrivate: true,
  excludeInternal: true,
  logLevel: 'Warn',
  // A bare "docs/method.md" or "def.name" in a comment is not a web address.
  markdownItOptions: { html: true, linkify: false },
  validation: { notExported: false, invalidLink: false },
};

async function main() {
  const packages = publishedPackages();
  const work = mkdtempSync(join(tmpdir(), 'relp-api-'));
  try {
    // Each package on its own (its own entry points), then merged into one site.
    const jsons = [];
    for (const [i, p] of packages.entries()) {
      // A program of the entry points and what they import (the root tsconfig would load every package 19 times).
      const config = join(work, `tsconfig-${i}.json`);
      writeFileSync(
        config,
        JSON.stringify({
          extends: join(repo, 'tsconfig.base.json'),
          compilerOptions: {
            noEmit: true,
            customConditions: ['source'],
            typeRoots: [join(repo, 'node_modules', '@types')],
          },
          files: p.entries,
        }),
      );
      const app = await Application.bootstrap({
        ...common,
        tsconfig: config,
        entryPoints: p.entries,
        entryPointStrategy: 'resolve',
        name: p.name,
        readme: 'none',
      });
      const project = await app.convert();
      if (!project) throw new Error(`TypeDoc could not convert ${p.name}`);
      const file = join(work, `${i}.json`);
      await app.generateJson(project, file);
      jsons.push(file);
    }
    const readme = join(work, 'README.md');
    writeFileSync(
      readme,
      [
        `Every published package of relp. Start with the guides: [what RelP is](${SITE}index.html), the ` +
          `[quick start](${SITE}quick-start.html) (installing the packages), [the library API](${SITE}library.html) ` +
          `(how the pieces fit), [the CLI](${SITE}cli.html), [in the browser](${SITE}browser.html) and ` +
          `[the method](${SITE}method.html).`,
        '',
        '| package | what |',
        '|---|---|',
        ...packages.map(
          (p) =>
            `| [${p.name}](${API}modules/${p.name.replace(/[@/]/g, '_')}.html) | ${summary(p).replaceAll('|', '\\|')} |`,
        ),
        '',
      ].join('\n'),
    );
    const app = await Application.bootstrapWithPlugins({
      ...common,
      entryPoints: jsons,
      entryPointStrategy: 'merge',
      out,
      name: 'relp API reference',
      readme,
      navigationLinks: { Guides: `${SITE}index.html`, 'Quick start': `${SITE}quick-start.html` },
    });
    const project = await app.convert();
    if (!project) throw new Error('TypeDoc could not merge the packages');
    for (const m of project.children ?? []) {
      const p = packages.find((q) => q.name === m.name);
      const text = p && description(p);
      if (text && !m.comment?.summary.length) m.comment = new Comment([{ kind: 'text', text }]);
    }
    await app.generateOutputs(project);
    relativiseSiteLinks(out);
    console.log(`API reference of ${packages.length} packages written to ${out}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** `https://relp-site.invalid/x.html` → the path from each page to the site's x.html (the reference sits in the
 * site's api/), and `https://relp-api.invalid/x.html` to the reference's x.html. */
function relativiseSiteLinks(dir) {
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, name.name);
    if (name.isDirectory()) relativiseSiteLinks(path);
    else if (name.name.endsWith('.html')) {
      const text = readFileSync(path, 'utf8');
      if (!text.includes(SITE) && !text.includes(API)) continue;
      const depth = relative(out, path).split(sep).length - 1;
      writeFileSync(
        path,
        text.replaceAll(SITE, '../'.repeat(depth + 1)).replaceAll(API, '../'.repeat(depth)),
      );
    }
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(dirname(out), { recursive: true });
  await main();
}
