import '@relp/web/style.css';
import { type AttributionResult, type BackendChoice, RESIDUAL_LIKE_SITES, SITES } from '@relp/core';
import { TASKS } from '@relp/tasks';
import {
  circuitFromResults,
  type DataChoice,
  DEFAULT_SITES,
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
  WorkerRunError,
} from '@relp/web';
import plainWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import simdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import threadedWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';

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

const params = new URLSearchParams(location.search);
if (params.get('backend')) backendSelect.value = params.get('backend')!;

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
modelSelect.addEventListener('change', syncForm);
taskSelect.addEventListener('change', syncForm);
syncForm();

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'relp' });
const client = new RelpWorkerClient(worker);

function showBackend(c: BackendChoice): void {
  backendStatus.replaceChildren();
  const b = document.createElement('strong');
  b.textContent = c.name;
  backendStatus.append('Backend: ', b, ` — ${c.reason}`);
  backendStatus.dataset.backend = c.name;
  const tried = c.tried.filter((t) => !t.ok);
  if (tried.length > 0) {
    const ul = document.createElement('ul');
    for (const t of tried) {
      const li = document.createElement('li');
      li.textContent = `${t.name}: ${t.note}`;
      ul.append(li);
    }
    backendStatus.append(ul);
  }
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
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  if (p.total !== undefined && p.total > 0 && p.done !== undefined) {
    progressBar.max = p.total;
    progressBar.value = p.done;
    progressText.textContent = bytes
      ? `${p.message}: ${mb(p.done)} of ${mb(p.total)}`
      : `${p.message} (${p.done}/${p.total})`;
  } else {
    progressBar.removeAttribute('value');
    progressText.textContent = p.message;
  }
  progressText.dataset.stage = p.stage;
}

function modelChoice(): ModelChoice {
  const v = modelSelect.value;
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

let current: { cancel(): void } | undefined;

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
    return;
  }
  document.body.dataset.state = 'running';
  runButton.disabled = true;
  cancelButton.disabled = false;
  const job = client.run(
    {
      model,
      data,
      methods,
      sites,
      normalize: $<HTMLInputElement>('normalize').checked,
      backend: backendSelect.value,
      wasmPaths,
    },
    { onProgress: showProgress, onBackend: showBackend },
  );
  current = job;
  job.result
    .then((out) => {
      (window as unknown as { relpOutput: RunOutput }).relpOutput = out;
      renderOutput(out);
      progressBar.max = 1;
      progressBar.value = 1;
      progressText.textContent = `done in ${out.seconds.toFixed(2)} s`;
      document.body.dataset.state = 'done';
    })
    .catch((e: unknown) => {
      showError(e);
      progressBar.max = 1;
      progressBar.value = 0;
      progressText.textContent = 'stopped';
      document.body.dataset.state = 'error';
    })
    .finally(() => {
      current = undefined;
      runButton.disabled = false;
      cancelButton.disabled = true;
    });
});

cancelButton.addEventListener('click', () => current?.cancel());

// Say which backend will run (and why) before anything is run.
client
  .selectBackend(backendSelect.value, wasmPaths)
  .then(showBackend)
  .catch((e: unknown) => showError(e));
backendSelect.addEventListener('change', () => {
  client
    .selectBackend(backendSelect.value, wasmPaths)
    .then(showBackend)
    .catch((e: unknown) => showError(e));
});
