import '@relp/web/style.css';
import './demo.css';
import { type AttributionResult, RESIDUAL_LIKE_SITES, SITES } from '@relp/core';
import { TASKS } from '@relp/tasks';
import {
  type BrowserBackendChoice,
  circuitFromResults,
  type DataChoice,
  DEFAULT_MODEL,
  DEFAULT_SITES,
  type HubFileChoice,
  isHubFileCached,
  METHODS,
  type ModelChoice,
  maxAbsOf,
  type ProgressEvent,
  RelpWorkerClient,
  type RunOutput,
  renderCircuitGraph,
  renderCorrelationTable,
  renderHeatmap,
  renderScatter,
  runnableGgufArchitectures,
  WorkerRunError,
} from '@relp/web';
import { GGUF_SUPPORTED_ARCHITECTURES } from '@relp/weights';
import plainWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import simdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import threadedWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { ensureIsolation, type Isolation } from './isolation.js';

// The wasm binaries are emitted by Vite next to the page; the worker needs absolute URLs.
const abs = (u: string) => new URL(u, document.baseURI).href;
const wasmPaths = {
  'tfjs-backend-wasm.wasm': abs(plainWasm),
  'tfjs-backend-wasm-simd.wasm': abs(simdWasm),
  'tfjs-backend-wasm-threaded-simd.wasm': abs(threadedWasm),
};

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = $<HTMLFormElement>('demo-form');
const modelSelect = $<HTMLSelectElement>('model-select');
const taskSelect = $<HTMLSelectElement>('task-select');
const backendSelect = $<HTMLSelectElement>('backend-select');
const runButton = $<HTMLButtonElement>('run');
const cancelButton = $<HTMLButtonElement>('cancel');
const progressBar = $<HTMLProgressElement>('progress');
const progressText = $('progress-text');
const backendStatus = $('backend-status');
const errorBox = $('error');
const results = $('results');
const staleNote = $('stale-note');
const elapsedText = $('elapsed');
const modelNote = $('model-note');

// The method checkboxes come from the methods registry; the demo preselects the ground truth, AtP and RelP.
const PRESELECTED = new Set(['activation-patching', 'atp', 'relp']);
const methodBox = $('methods');
for (const m of METHODS) {
  const label = document.createElement('label');
  label.title = `${m.summary} (cost: ${m.cost})`;
  const input = document.createElement('input');
  Object.assign(input, { type: 'checkbox', name: 'method', value: m.name, checked: PRESELECTED.has(m.name) });
  label.append(input, ` ${m.title}${m.kind === 'activation-patching' ? ' (ground truth)' : ''}`);
  methodBox.append(label);
}

// The sites whose scores are [layer × position] grids, from the site table; the web package's defaults preselected.
const siteBox = $('sites');
for (const name of RESIDUAL_LIKE_SITES) {
  const label = document.createElement('label');
  label.title = SITES[name].description;
  const input = document.createElement('input');
  Object.assign(input, {
    type: 'checkbox',
    name: 'site',
    value: name,
    checked: DEFAULT_SITES.includes(name),
  });
  label.append(input, ` ${name}`);
  siteBox.append(label);
}

for (const t of TASKS) {
  taskSelect.append(
    new Option(`${t.name} — ${t.description}`, t.name, t.name === 'ioi-demo', t.name === 'ioi-demo'),
  );
}
taskSelect.append(new Option('typed prompt pairs…', 'typed'));

// The GGUF architectures the loader reads that a model family runs (the picker's label and its errors agree).
$('gguf-architectures').textContent = orList(runnableGgufArchitectures(GGUF_SUPPORTED_ARCHITECTURES));

function orList(xs: readonly string[]): string {
  return xs.length <= 1 ? (xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} or ${xs[xs.length - 1]}`;
}

const params = new URLSearchParams(location.search);
if (params.get('backend')) backendSelect.value = params.get('backend')!;
// ?model=<menu value> preselects a model ("site:relp-test/tiny-gpt2" for the offline test model).
const askedModel = params.get('model');
if (askedModel && Array.from(modelSelect.options).some((o) => o.value === askedModel)) {
  modelSelect.value = askedModel;
}

/**
 * The default model's hub: huggingface.co, or a mirror given as `?hub=URL` or at build time
 * (VITE_RELP_HUB_ENDPOINT). A mirror's file is checked by its own size and ETag, not by the pinned SHA-256 (tests
 * serve a small GGUF under the same path).
 */
const hubEndpoint =
  params.get('hub') ??
  (import.meta as { env?: Record<string, string | undefined> }).env?.VITE_RELP_HUB_ENDPOINT;
const defaultModel: HubFileChoice = hubEndpoint
  ? {
      kind: 'hub-file',
      repo: DEFAULT_MODEL.repo,
      file: DEFAULT_MODEL.file,
      revision: DEFAULT_MODEL.revision,
      endpoint: new URL(hubEndpoint, document.baseURI).href,
    }
  : DEFAULT_MODEL;

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** The default model's download size: pinned, or (from a mirror) what the server says before any download. */
async function defaultModelSize(): Promise<number | undefined> {
  if (defaultModel.size !== undefined) return defaultModel.size;
  const url = `${defaultModel.endpoint}/${defaultModel.repo}/resolve/${encodeURIComponent(defaultModel.revision)}/${defaultModel.file}`;
  const res = await fetch(url, { method: 'HEAD' }).catch(() => undefined);
  const len = Number(res?.headers.get('content-length') ?? Number.NaN);
  return res?.ok && Number.isFinite(len) ? len : undefined;
}

/** Says, under the model menu, what the chosen model is and what running it costs (a download, or none). */
async function describeModel(): Promise<void> {
  const v = modelSelect.value;
  modelNote.dataset.kind = v.startsWith('site:') ? 'random' : v === 'default' ? 'real' : 'other';
  if (v === 'default') {
    const [size, cached] = await Promise.all([
      defaultModelSize(),
      isHubFileCached(defaultModel).catch(() => false),
    ]);
    if (modelSelect.value !== 'default') return;
    const from = defaultModel.endpoint ? ` from ${defaultModel.endpoint}` : ' from the Hugging Face hub';
    modelNote.dataset.cached = String(cached);
    modelNote.textContent = cached
      ? `${DEFAULT_MODEL.title}: real weights, in this browser's cache (${size === undefined ? 'size unknown' : mb(size)}): no download.`
      : `${DEFAULT_MODEL.title}: real weights. The first run downloads ${size === undefined ? 'it (size unknown)' : mb(size)}${from}, then it stays in this browser's cache.`;
  } else if (v.startsWith('site:')) {
    modelNote.textContent =
      'Random weights: the numbers are meaningless, for testing the page (and offline use).';
  } else if (v.startsWith('hub:') || v === 'custom') {
    modelNote.textContent =
      'Downloaded from the Hugging Face hub on the first run, then kept in this browser’s cache.';
  } else {
    modelNote.textContent = '';
  }
}

const show = (selector: string, on: boolean) => {
  for (const el of Array.from(document.querySelectorAll<HTMLElement>(selector))) el.hidden = !on;
};
const syncForm = () => {
  const m = modelSelect.value;
  show('.when-custom', m === 'custom');
  show('.when-folder', m === 'folder');
  show('.when-gguf', m === 'gguf');
  show('.when-local', m === 'folder' || m === 'gguf');
  const info = TASKS.find((t) => t.name === taskSelect.value);
  show('.when-typed', taskSelect.value === 'typed');
  show('.when-generated', info !== undefined && !info.fixed);
};
modelSelect.addEventListener('change', () => {
  syncForm();
  void describeModel();
});
taskSelect.addEventListener('change', syncForm);
syncForm();
void describeModel();

// Multi-threaded WASM needs a cross-origin isolated page: headers from the host, else a service worker (which
// reloads the page once). The worker starts after that.
const isolation: Isolation = await ensureIsolation('./coi-sw.js');

// A factory, so that Cancel can stop a computing run by replacing the worker.
const client = new RelpWorkerClient(
  () => new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'relp' }),
);

function showBackend(c: BrowserBackendChoice): void {
  backendStatus.replaceChildren();
  const b = document.createElement('strong');
  b.textContent = c.name;
  const why = c.wasm && !c.wasm.isolated && isolation.whyNot ? `. Why one thread: ${isolation.whyNot}.` : '';
  backendStatus.append('Backend: ', b, ` — ${c.status}${why}`);
  backendStatus.dataset.backend = c.name;
  if (c.wasm) backendStatus.dataset.threads = String(c.wasm.threads);
  else delete backendStatus.dataset.threads;
  backendStatus.dataset.isolated = String(globalThis.crossOriginIsolated === true);
}

function showError(e: unknown): void {
  const shown =
    e instanceof WorkerRunError
      ? e.shown
      : { code: 'INTERNAL', title: 'Unexpected error', message: e instanceof Error ? e.message : String(e) };
  errorBox.replaceChildren();
  const h = document.createElement('strong');
  h.textContent = shown.title;
  const p = document.createElement('p');
  p.textContent = shown.message;
  errorBox.append(h, p);
  if ('hint' in shown && shown.hint) {
    const hint = document.createElement('p');
    hint.className = 'hint';
    hint.textContent = shown.hint;
    errorBox.append(hint);
  }
  errorBox.dataset.code = shown.code;
  errorBox.hidden = false;
}

function showProgress(p: ProgressEvent): void {
  const bytes = p.stage === 'download';
  const method = p.method && p.method.count > 1 ? `method ${p.method.index} of ${p.method.count} · ` : '';
  if (p.total !== undefined && p.total > 0 && p.done !== undefined) {
    progressBar.max = p.total;
    progressBar.value = p.done;
    progressText.textContent = bytes
      ? `${p.message}: ${mb(p.done)} of ${mb(p.total)}`
      : `${method}${p.message} (step ${p.done} of ${p.total})`;
  } else {
    progressBar.removeAttribute('value');
    progressText.textContent = `${method}${p.message}`;
  }
  progressText.dataset.stage = p.stage;
  // Past loading: the worker holds the model, so a fresh worker after Cancel may load it again at once.
  if (p.stage !== 'backend' && p.stage !== 'download' && p.stage !== 'load' && running) {
    running.modelLoaded = true;
  }
}

/** A clock that ticks while a run goes, so a long pass without progress events still shows it is alive. */
function startClock(): () => number {
  const t0 = performance.now();
  const tick = () => {
    const s = Math.floor((performance.now() - t0) / 1000);
    elapsedText.textContent = `· ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')} elapsed`;
  };
  tick();
  const timer = setInterval(tick, 250);
  return () => {
    clearInterval(timer);
    return (performance.now() - t0) / 1000;
  };
}

/** Marks the results on screen as those of an earlier run (dimmed, labelled), or clears the mark. */
function markStale(why: string | undefined): void {
  if (results.hidden) return;
  if (why === undefined) {
    delete results.dataset.stale;
    staleNote.hidden = true;
  } else {
    results.dataset.stale = 'true';
    staleNote.textContent = `stale: from the previous run (${why})`;
    staleNote.hidden = false;
  }
}

function modelChoice(): ModelChoice {
  const v = modelSelect.value;
  if (v === 'default') return defaultModel;
  if (v.startsWith('site:'))
    return { kind: 'hub', id: v.slice(5), endpoint: new URL('./hub', document.baseURI).href };
  if (v.startsWith('hub:')) return { kind: 'hub', id: v.slice(4) };
  if (v === 'custom') {
    const raw = $<HTMLInputElement>('model-id').value.trim();
    if (!raw)
      throw new WorkerRunError({
        code: 'BAD_INPUT',
        title: 'No model id',
        message: 'Type a Hugging Face id such as openai-community/gpt2.',
      });
    const [id, revision] = raw.split('@') as [string, string | undefined];
    return { kind: 'hub', id, ...(revision ? { revision } : {}) };
  }
  const input = $<HTMLInputElement>(v === 'folder' ? 'model-folder' : 'model-gguf');
  const files = Array.from(input.files ?? []);
  if (files.length === 0) {
    throw new WorkerRunError({
      code: 'BAD_INPUT',
      title: 'No files picked',
      message:
        v === 'folder'
          ? 'Pick a folder with config.json, model.safetensors and tokenizer.json.'
          : 'Pick a .gguf file.',
    });
  }
  return { kind: 'files', files };
}

function dataChoice(): DataChoice {
  if (taskSelect.value === 'typed')
    return { kind: 'pairs', text: $<HTMLTextAreaElement>('pairs-text').value };
  return {
    kind: 'task',
    task: taskSelect.value,
    n: Number($<HTMLInputElement>('task-n').value) || 8,
    seed: Number($<HTMLInputElement>('task-seed').value) || 0,
  };
}

const checked = (name: string) =>
  Array.from(form.querySelectorAll<HTMLInputElement>(`input[name=${name}]:checked`)).map((i) => i.value);

function positionGrid(r: AttributionResult, site: string): number[][] | undefined {
  const g = r.scores[site as keyof typeof r.scores];
  return g && !Array.isArray(g[0]?.[0]) ? (g as number[][]) : undefined;
}

function renderOutput(out: RunOutput): void {
  results.hidden = false;
  const summary = $('summary');
  const ref = out.results[0]!;
  summary.innerHTML = '';
  const lines = [
    `Model: ${out.model.architecture}, ${out.model.nLayers} layers, d ${out.model.dModel}, vocabulary ${out.model.vocabSize} (${out.model.source}${out.model.tokenizer ? `; tokenizer: ${out.model.tokenizer}` : ''}).`,
    `${out.nPairs} prompt pairs of ${ref.seqLen} tokens; metric ${ref.metric.name}: clean ${ref.metric.clean.toPrecision(5)}, corrupt ${ref.metric.corrupt.toPrecision(5)}${ref.metric.normalized ? '; scores are of the normalised metric' : ''}.`,
    `First prompt: ${JSON.stringify(out.prompts[0]?.clean ?? '')} → ${JSON.stringify(out.prompts[0]?.answer ?? '')} (corrupt: ${JSON.stringify(out.prompts[0]?.corrupt ?? '')}).`,
    `Ran on ${out.backend.name} in ${out.seconds.toFixed(2)} s: ${out.results.map((r) => `${r.label} ${r.cost.forwardPasses} fwd / ${r.cost.backwardPasses} bwd, ${r.cost.seconds.toFixed(2)} s`).join('; ')}.`,
    ...(out.droppedNote ? [out.droppedNote] : []),
    ...(out.model.source.includes('relp-test/')
      ? ['Random weights: this test model’s numbers are meaningless (choose SmolLM2-135M for real ones).']
      : []),
  ];
  for (const l of lines) {
    const p = document.createElement('p');
    p.textContent = l;
    summary.append(p);
  }

  const corr = $('correlation');
  corr.replaceChildren();
  if (out.correlations.length > 0) {
    const h = document.createElement('h3');
    h.textContent = 'Agreement with activation patching';
    corr.append(h);
    renderCorrelationTable(corr, out.correlations);
  }

  const heat = $('heatmaps');
  heat.replaceChildren();
  const sites = Object.keys(ref.scores);
  for (const site of sites) {
    const grids = out.results
      .map((r) => positionGrid(r, site))
      .filter((g): g is number[][] => g !== undefined);
    const maxAbs = maxAbsOf(...grids);
    const h = document.createElement('h3');
    h.textContent = `${site} (shared colour scale ±${maxAbs.toPrecision(3)})`;
    const row = document.createElement('div');
    row.className = 'row-wrap';
    heat.append(h, row);
    for (const r of out.results) {
      const grid = positionGrid(r, site);
      if (!grid) continue;
      renderHeatmap(row, {
        grid,
        tokens: out.tokens,
        title: `${r.label} · ${site}`,
        maxAbs,
        attrs: { 'data-method': r.label, 'data-site': site },
      });
    }
  }

  const scat = $('scatters');
  scat.replaceChildren();
  const ap = out.results.find((r) => r.method === 'activation-patching');
  if (ap) {
    for (const site of sites) {
      const reference = positionGrid(ap, site);
      if (!reference) continue;
      renderScatter(scat, {
        reference,
        tokens: out.tokens,
        title: `${site}: estimate vs activation patching`,
        series: out.results
          .filter((r) => r !== ap)
          .map((r) => ({ label: r.label, grid: positionGrid(r, site) ?? [] })),
        attrs: { 'data-site': site },
      });
    }
  }

  const circ = $('circuit');
  circ.replaceChildren();
  const h = document.createElement('h3');
  h.textContent = 'Circuit graph';
  const pick = document.createElement('select');
  pick.id = 'circuit-method';
  for (const r of out.results)
    pick.append(new Option(r.label, r.label, r.label === 'relp', r.label === 'relp'));
  const holder = document.createElement('div');
  const draw = () => {
    holder.replaceChildren();
    renderCircuitGraph(holder, circuitFromResults(out.results, out.tokens, { method: pick.value, topK: 20 }));
  };
  pick.addEventListener('change', draw);
  const label = document.createElement('label');
  label.append('Nodes selected by ', pick);
  circ.append(h, label, holder);
  draw();
}

/** The run in progress: its cancel handle, and what the page needs to warm a fresh worker after a cancel. */
let running:
  | { cancel(): void; load: Parameters<RelpWorkerClient['preload']>[0]; modelLoaded: boolean }
  | undefined;

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  errorBox.hidden = true;
  let model: ModelChoice;
  let data: DataChoice;
  try {
    model = modelChoice();
    data = dataChoice();
  } catch (e) {
    showError(e);
    markStale('the new run did not start');
    return;
  }
  const methods = checked('method');
  const sites = checked('site');
  if (methods.length === 0 || sites.length === 0) {
    showError(
      new WorkerRunError({
        code: 'BAD_INPUT',
        title: 'Nothing to run',
        message: 'Choose at least one method and one site.',
      }),
    );
    markStale('the new run did not start');
    return;
  }
  document.body.dataset.state = 'running';
  markStale('a new run is going');
  runButton.disabled = true;
  cancelButton.disabled = false;
  const stopClock = startClock();
  const backend = backendSelect.value;
  const job = client.run(
    { model, data, methods, sites, normalize: $<HTMLInputElement>('normalize').checked, backend, wasmPaths },
    { onProgress: showProgress, onBackend: showBackend },
  );
  running = { cancel: job.cancel, load: { model, backend, wasmPaths }, modelLoaded: false };
  job.result
    .then((out) => {
      (window as unknown as { relpOutput: RunOutput }).relpOutput = out;
      markStale(undefined);
      renderOutput(out);
      progressBar.max = 1;
      progressBar.value = 1;
      progressText.textContent = `done in ${out.seconds.toFixed(2)} s`;
      document.body.dataset.state = 'done';
    })
    .catch((e: unknown) => {
      const cancelled = e instanceof WorkerRunError && e.shown.code === 'ABORTED';
      progressBar.max = 1;
      progressBar.value = 0;
      if (cancelled) {
        progressText.textContent = `cancelled after ${stopClock().toFixed(1)} s`;
        markStale('the last run was cancelled');
        document.body.dataset.state = 'cancelled';
      } else {
        showError(e);
        progressText.textContent = 'stopped';
        markStale('the last run failed');
        document.body.dataset.state = 'error';
      }
    })
    .finally(() => {
      stopClock();
      elapsedText.textContent = '';
      running = undefined;
      runButton.disabled = false;
      cancelButton.disabled = true;
      void describeModel();
    });
});

cancelButton.addEventListener('click', () => {
  const run = running;
  if (!run) return;
  run.cancel();
  // The fresh worker loads the model again (from the browser cache or the picked file) while the user decides
  // what to run next; a model still downloading when cancelled is not fetched again unasked.
  if (run.modelLoaded) client.preload(run.load).catch(() => undefined);
});

// Say which backend will run (and why) before anything is run.
const selectBackend = () =>
  client
    .selectBackend(backendSelect.value, wasmPaths)
    .then(showBackend)
    .catch((e: unknown) => showError(e));
void selectBackend();
backendSelect.addEventListener('change', () => void selectBackend());
