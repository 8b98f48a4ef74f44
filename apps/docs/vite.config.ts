import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { marked } from 'marked';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';

const root = dirname(fileURLToPath(import.meta.url));

/** The site's pages, in navigation order: [file, title]. */
export const PAGES: readonly (readonly [string, string])[] = [
  ['index.html', 'What is RelP'],
  ['quick-start.html', 'Quick start'],
  ['cli.html', 'The CLI'],
  ['library.html', 'Library API'],
  ['method.html', 'The method'],
  ['tasks.html', 'Tasks'],
  ['report.html', 'Reading the report'],
  ['browser.html', 'In the browser'],
  ['demo.html', 'Live demo'],
];

/**
 * Every page is a small HTML file whose body is `<!--relp:md content/x.md-->` (a guide rendered from Markdown)
 * or its own markup; this plugin adds the header, the navigation (relative links, so any static host works)
 * and the stylesheet.
 */
function layout(): Plugin {
  return {
    name: 'relp-docs-layout',
    transformIndexHtml: {
      order: 'pre',
      handler(html, ctx) {
        const file = ctx.filename.slice(root.length + 1);
        const body = html.replace(/<!--relp:md (\S+)-->/g, (_, md: string) =>
          marked.parse(readFileSync(join(root, md), 'utf8'), { async: false }),
        );
        const nav = [
          ...PAGES.map(([f, t]) => `<a href="./${f}"${f === file ? ' aria-current="page"' : ''}>${t}</a>`),
          '<a href="./api/index.html">API reference</a>',
        ].join('\n');
        return body
          .replace(
            '</head>',
            '<link rel="icon" href="data:," />\n<link rel="stylesheet" href="./src/site.css" />\n</head>',
          )
          .replace(
            /<body([^>]*)>/,
            `<body$1>\n<header class="site"><a class="brand" href="./index.html">relp</a><nav>${nav}</nav></header>\n<main class="page">`,
          )
          .replace(
            '</body>',
            '</main>\n<footer class="site">relp · Relevance Patching on TensorFlow.js · MIT</footer>\n</body>',
          );
      },
    },
  };
}

/** The response headers that make a page cross-origin isolated (SharedArrayBuffer, so multi-threaded WASM). */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
} as const;

/**
 * Makes the built site isolation-ready and readable from disk: writes `_headers` (Netlify, Cloudflare Pages)
 * with the isolation headers, and `coi-sw.js`, the service worker the demo registers where the host sends no
 * such headers; and drops the `crossorigin` attribute Vite puts on stylesheet and script tags, with which a page
 * opened from `file://` loads no stylesheet at all (same-origin files need no CORS mode).
 */
function staticHosting(): Plugin {
  return {
    name: 'relp-docs-static-hosting',
    apply: 'build',
    generateBundle() {
      const lines = Object.entries(ISOLATION_HEADERS).map(([k, v]) => `  ${k}: ${v}`);
      this.emitFile({ type: 'asset', fileName: '_headers', source: ['/*', ...lines, ''].join('\n') });
      this.emitFile({
        type: 'asset',
        fileName: 'coi-sw.js',
        source: readFileSync(join(root, 'src', 'demo', 'coi-sw.js'), 'utf8'),
      });
    },
    transformIndexHtml: {
      order: 'post',
      handler: (html) => html.replace(/(<(?:link|script)\b[^>]*?)\s+crossorigin(?:="[^"]*")?/g, '$1'),
    },
  };
}

export default defineConfig({
  root,
  base: './',
  publicDir: 'public',
  resolve: { conditions: ['source', ...defaultClientConditions] },
  worker: {
    format: 'es',
    // tfjs-backend-wasm's threaded build starts its threads from the source text of its factory function
    // (Function.prototype.toString), which must still name its closure's variables: minify the worker's bundle
    // without renaming or rewriting them (a compressed `typeof _scriptDir` check becomes a bare reference), or
    // every thread fails with a ReferenceError.
    rolldownOptions: { output: { minify: { mangle: false, compress: false } } },
  },
  plugins: [layout(), staticHosting()],
  server: { host: '127.0.0.1', headers: ISOLATION_HEADERS },
  preview: { host: '127.0.0.1', headers: ISOLATION_HEADERS },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      input: Object.fromEntries(
        readdirSync(root)
          .filter((f) => f.endsWith('.html'))
          .map((f) => [f.replace(/\.html$/, ''), resolve(root, f)]),
      ),
    },
  },
});
