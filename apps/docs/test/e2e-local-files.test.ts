/**
 * End-to-end, the demo's "local files" model sources: a GGUF file and a Hugging Face folder picked through the
 * page's file inputs (`setInputFiles`, as a user would pick them), run on WASM, and compared with the Node
 * library on the same file and prompt pairs; corrupt, unsupported and misnamed files show clear errors. The GGUF
 * file is a tiny random Llama written at test time (scripts/tiny-gguf.ts) with its tokenizer in the metadata.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SiteName } from '@relp/core';
import type { TextPair } from '@relp/tasks';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { tinyLlamaGguf, truncatedGguf } from '../scripts/tiny-gguf.js';
import {
  artifacts,
  CHROMIUM,
  compareWithNode,
  FLAGS,
  runDemo,
  WEBGPU_FLAGS,
  webgpuAdapter,
} from './demo-helpers.js';
import { type NodeReference, nodeReference } from './node-reference.js';
import { serveStatic } from './static-server.js';

const SITES: SiteName[] = ['resid_pre', 'attn_out', 'mlp_out'];
const METHODS = ['activation-patching', 'atp', 'relp'];

/** Typed pairs in the words the tiny GGUF vocabulary spells as one token each (see TINY_GGUF_WORDS). */
const GGUF_PAIRS: TextPair[] = [
  ['John', 'Mary', 'store', 'bag'],
  ['Tom', 'Anna', 'park', 'ball'],
  ['Mary', 'Tom', 'school', 'book'],
].map(([a, b, place, thing]) => ({
  clean: `When ${a} and ${b} went to the ${place}, ${b} gave a ${thing} to`,
  corrupt: `When ${a} and ${b} went to the ${place}, ${a} gave a ${thing} to`,
  answer: ` ${a}`,
  wrong: ` ${b}`,
}));

/** The same pairs as a user types them into the demo ("clean | corrupt | answer | wrong"). */
const typed = (pairs: readonly TextPair[]) =>
  pairs.map((p) => `${p.clean} | ${p.corrupt} | ${p.answer.trim()} | ${p.wrong.trim()}`).join('\n');

const GPT2_PAIRS: TextPair[] = [
  {
    clean: 'When John and Mary went to the store, Mary gave a bag to',
    corrupt: 'When John and Mary went to the store, John gave a bag to',
    answer: ' John',
    wrong: ' Mary',
  },
];

const haveChromium = existsSync(CHROMIUM);

async function pickAndType(page: Page, select: string, input: string, path: string, pairs: string) {
  await page.selectOption('#model-select', select);
  await page.setInputFiles(input, path);
  await page.selectOption('#task-select', 'typed');
  await page.fill('#pairs-text', pairs);
}

describe.skipIf(!haveChromium)('demo with local files in Chromium', () => {
  const inputs = join(artifacts, 'local-files');
  const gguf = join(inputs, 'tiny-llama.gguf');
  const bad = {
    truncated: join(inputs, 'tiny-llama-truncated.gguf'),
    phi3: join(inputs, 'tiny-phi3.gguf'),
    notGguf: join(inputs, 'notes.gguf'),
    misnamed: join(inputs, 'tiny-llama.bin'),
  };
  let site: Awaited<ReturnType<typeof serveStatic>>;
  let gpt2Folder: string;
  let ggufReference: NodeReference;
  let browser: Browser;
  const report: Record<string, unknown> = {};

  beforeAll(async () => {
    mkdirSync(inputs, { recursive: true });
    const bytes = tinyLlamaGguf();
    writeFileSync(gguf, bytes);
    writeFileSync(bad.truncated, truncatedGguf(bytes));
    writeFileSync(bad.phi3, tinyLlamaGguf({ architecture: 'phi3' }));
    writeFileSync(bad.notGguf, 'these are my notes, not a model\n');
    writeFileSync(bad.misnamed, bytes);
    report.ggufBytes = bytes.length;
    const dist = inject('dist');
    gpt2Folder = join(dist, 'hub', 'relp-test', 'tiny-gpt2', 'resolve', 'main');
    site = await serveStatic(dist);
    const t0 = Date.now();
    ggufReference = await nodeReference(gguf, { pairs: GGUF_PAIRS }, SITES);
    report.nodeGgufSeconds = (Date.now() - t0) / 1000;
    report.nodeGguf = { metric: ggufReference.results.atp!.metric, pearson: ggufReference.pearson };
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await site?.close();
    writeFileSync(join(artifacts, 'numbers-local-files.json'), `${JSON.stringify(report, null, 2)}\n`);
  });

  it('runs RelP, AtP and activation patching on a picked GGUF file (WASM) with the Node library’s numbers', async () => {
    const page = await browser.newPage();
    const t0 = Date.now();
    const shown = await runDemo(page, site.url, 'wasm', 'demo-gguf-wasm', (p) =>
      pickAndType(p, 'gguf', '#model-gguf', gguf, typed(GGUF_PAIRS)),
    );
    report.ggufPageSeconds = (Date.now() - t0) / 1000;
    expect(shown.backend).toBe('wasm');
    // The worker read config and tokenizer from the GGUF metadata: same model, same tokens as Node.
    expect(shown.model).toMatchObject({
      architecture: 'llama',
      nLayers: ggufReference.dims.nLayers,
      dModel: ggufReference.dims.dModel,
      vocabSize: ggufReference.dims.vocabSize,
      source: 'GGUF file tiny-llama.gguf',
    });
    expect(shown.modelTokenizer).toBe('GGUF metadata (tokenizer.ggml.*)');
    expect(shown.tokens).toEqual(ggufReference.tokens);
    expect(shown.summaryText).toMatch(/3 prompt pairs of 15 tokens/);
    report.ggufWasm = compareWithNode(shown, ggufReference, 'gguf wasm', 1e-5, METHODS, SITES);
    await page.close();
  }, 240_000);

  it('runs the same on a picked GGUF file on WebGPU (SwiftShader adapter) within float tolerance', async (ctx) => {
    const gpu = await chromium.launch({ executablePath: CHROMIUM, args: [...FLAGS, ...WEBGPU_FLAGS] });
    try {
      const page = await gpu.newPage();
      await page.goto(`${site.url}demo.html`);
      const adapter = await webgpuAdapter(page);
      if (adapter !== 'ok') {
        report.ggufWebgpu = { unavailable: adapter };
        console.warn(`[docs e2e] WebGPU unavailable in this Chromium: ${adapter}`);
        ctx.skip();
        return;
      }
      const t0 = Date.now();
      const shown = await runDemo(page, site.url, 'webgpu', 'demo-gguf-webgpu', (p) =>
        pickAndType(p, 'gguf', '#model-gguf', gguf, typed(GGUF_PAIRS)),
      );
      report.ggufWebgpuPageSeconds = (Date.now() - t0) / 1000;
      expect(shown.backend).toBe('webgpu');
      expect(shown.tokens).toEqual(ggufReference.tokens);
      report.ggufWebgpu = compareWithNode(shown, ggufReference, 'gguf webgpu', 1e-3, METHODS, SITES);
    } finally {
      await gpu.close();
    }
  }, 300_000);

  it('shows a clear error for a corrupt, unsupported or misnamed GGUF file', async () => {
    const page = await browser.newPage();
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${site.url}demo.html?backend=wasm`);
    await page.waitForSelector('#backend-status[data-backend]', { timeout: 60_000 });
    const cases = [
      {
        file: bad.truncated,
        code: 'BAD_MODEL_FILE',
        text: /tiny-llama-truncated\.gguf: GGUF: tensor "[^"]+" .* runs past the end of the file/,
        hint: /incomplete \(an interrupted download/,
      },
      {
        file: bad.notGguf,
        code: 'BAD_MODEL_FILE',
        text: /notes\.gguf: GGUF: not a GGUF file/,
        hint: /Download it again/,
      },
      {
        file: bad.phi3,
        code: 'UNSUPPORTED',
        text: /tiny-phi3\.gguf: GGUF: architecture "phi3" is not supported/,
        hint: /llama, qwen2 and gemma3 architectures/,
      },
      {
        file: bad.misnamed,
        code: 'BAD_INPUT',
        text: /tiny-llama\.bin is neither a GGUF file/,
        hint: undefined,
      },
    ];
    const seen: Record<string, string> = {};
    for (const c of cases) {
      await pickAndType(page, 'gguf', '#model-gguf', c.file, typed(GGUF_PAIRS));
      // The click's submit handler sets data-state="running" before the worker can answer.
      await page.click('#run');
      await page.waitForSelector('body[data-state="error"]', { timeout: 60_000 });
      const text = (await page.textContent('#error')) ?? '';
      seen[c.file.split('/').pop()!] = text;
      expect(await page.getAttribute('#error', 'data-code'), text).toBe(c.code);
      expect(text).toMatch(c.text);
      if (c.hint) expect(await page.textContent('#error .hint')).toMatch(c.hint);
      await page.locator('.status').screenshot({
        path: join(artifacts, `demo-gguf-error-${c.file.split('/').pop()!.replace(/\W+/g, '-')}.png`),
      });
    }
    report.ggufErrors = seen;
    // After the errors, the good file still runs in the same page (the worker is not left broken).
    await page.setInputFiles('#model-gguf', gguf);
    await page.click('#run');
    await page.waitForSelector('body[data-state="done"], body[data-state="error"]', { timeout: 120_000 });
    expect(await page.getAttribute('body', 'data-state'), (await page.textContent('#error')) ?? '').toBe(
      'done',
    );
    await page.close();
  }, 240_000);

  // Opt-in (a real 98 MB model, minutes on two cores): RELP_E2E_SMOLLM2=<path of SmolLM2-135M-Instruct.Q4_1.gguf>,
  // e.g. ~/.cache/relp/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf (pnpm relp fetches it).
  const smollm2 = process.env.RELP_E2E_SMOLLM2;
  it.runIf(smollm2 !== undefined && existsSync(smollm2))(
    'runs AtP and RelP on the real SmolLM2-135M GGUF (Q4_1) with the Node library’s numbers',
    async () => {
      const methods = ['atp', 'relp'];
      const pairs = [GPT2_PAIRS[0]!];
      let t0 = Date.now();
      const reference = await nodeReference(smollm2!, { pairs }, SITES, methods);
      report.smollm2NodeSeconds = (Date.now() - t0) / 1000;
      const page = await browser.newPage();
      t0 = Date.now();
      const shown = await runDemo(page, site.url, 'wasm', 'demo-smollm2-gguf-wasm', async (p) => {
        await pickAndType(p, 'gguf', '#model-gguf', smollm2!, typed(pairs));
        await p.uncheck('input[name=method][value="activation-patching"]');
      });
      report.smollm2PageSeconds = (Date.now() - t0) / 1000;
      expect(shown.model).toMatchObject({ architecture: 'llama', nLayers: 30, dModel: 576 });
      expect(shown.tokens).toEqual(reference.tokens);
      report.smollm2Wasm = compareWithNode(shown, reference, 'smollm2 wasm', 1e-5, methods, SITES);
      await page.close();
    },
    600_000,
  );

  it('runs on a Hugging Face folder picked through the folder input with the Node library’s numbers', async () => {
    const reference = await nodeReference(gpt2Folder, { pairs: GPT2_PAIRS }, SITES);
    const page = await browser.newPage();
    const shown = await runDemo(page, site.url, 'wasm', 'demo-folder-wasm', (p) =>
      pickAndType(p, 'folder', '#model-folder', gpt2Folder, typed(GPT2_PAIRS)),
    );
    expect(shown.model).toMatchObject({ architecture: 'gpt2', nLayers: 3, vocabSize: 50257 });
    expect(shown.model.source).toMatch(/^local folder main$/);
    expect(shown.modelTokenizer).toBe('tokenizer.json');
    expect(shown.tokens).toEqual(reference.tokens);
    report.folderWasm = compareWithNode(shown, reference, 'folder wasm', 1e-5, METHODS, SITES);
    await page.close();
  }, 240_000);
});
