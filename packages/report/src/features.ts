import { esc } from './svg.js';

/** One top-activating context of a feature: the window's tokens, the firing position, the activation. */
export interface FeatureContextView {
  readonly tokens: readonly string[];
  readonly position: number;
  readonly activation: number;
}

/** A node of a feature circuit as the page shows it: its id, score, and whether it is an SAE's error term. */
export interface FeatureNodeView {
  readonly id: string;
  readonly score: number;
  readonly error: boolean;
  /** The feature's top-activating contexts (none for error nodes). */
  readonly contexts: readonly FeatureContextView[];
}

function contextHtml(c: FeatureContextView): string {
  const lo = Math.max(0, c.position - 12);
  const hi = Math.min(c.tokens.length, c.position + 4);
  const text = c.tokens
    .slice(lo, hi)
    .map((t, j) =>
      lo + j === c.position ? `<mark title="${c.activation.toPrecision(3)}">${esc(t)}</mark>` : esc(t),
    )
    .join('');
  return `<div class="ctx">${c.activation.toFixed(2)} · …${text}…</div>`;
}

/**
 * A self-contained page listing each node of a feature circuit with its score and its top-activating contexts,
 * the firing token marked; `source` says where the contexts' text came from.
 */
export function featureCircuitHtml(title: string, nodes: readonly FeatureNodeView[], source: string): string {
  const rows = nodes
    .map((n) => {
      const ctx = n.contexts.map(contextHtml).join('');
      return `<tr><td>${esc(n.id)}</td><td>${n.score.toPrecision(3)}</td><td>${
        n.error ? '<i>SAE error term</i>' : ctx || '<i>no activation in the sampled text</i>'
      }</td></tr>`;
    })
    .join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title><style>
body{font-family:Helvetica,Arial,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.3em .6em;vertical-align:top;text-align:left}
.ctx{font-family:monospace;white-space:pre-wrap;margin:.15em 0}mark{background:#ffb74d}
</style></head><body><h1>${esc(title)}</h1><p>Top-activating contexts from ${esc(source)}.</p>
<table><tr><th>node</th><th>score</th><th>top-activating contexts (activation · text, firing token marked)</th></tr>
${rows}
</table></body></html>
`;
}
