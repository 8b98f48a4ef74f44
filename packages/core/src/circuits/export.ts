import type { CircuitNode, ScoredNode } from './nodes.js';
import { nodeId } from './nodes.js';

function dotEscape(s: string): string {
  return s.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
}

/**
 * The circuit as a Graphviz digraph: one cluster per layer, one node per circuit node (filled by the sign and
 * size of its score), and edges along which the residual stream can carry information (a node to a node of a later
 * sub-block at the same or a later position), reduced transitively. Node-level
 * circuits carry no edge weights; edges show possible information flow only.
 */
export function circuitToDot(
  nodes: readonly ScoredNode[],
  options: { title?: string; tokenLabels?: readonly string[]; maxEdges?: number } = {},
): string {
  const order: Record<string, number> = {
    resid_pre: 0,
    q: 1,
    k: 1,
    v: 1,
    pattern: 2,
    z: 3,
    result: 4,
    attn_out: 5,
    resid_mid: 6,
    mlp_pre: 7,
    mlp_post: 8,
    mlp_out: 9,
    resid_post: 10,
  };
  const rank = (n: CircuitNode) => n.layer * 100 + (order[n.site] ?? 50);
  const maxAbs = Math.max(1e-30, ...nodes.map((n) => Math.abs(n.score)));
  const lines = [
    'digraph circuit {',
    '  rankdir=BT;',
    '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
  ];
  if (options.title) lines.push(`  label="${dotEscape(options.title)}"; labelloc=t;`);
  const byLayer = new Map<number, ScoredNode[]>();
  for (const n of nodes) byLayer.set(n.layer, [...(byLayer.get(n.layer) ?? []), n]);
  for (const [layer, ns] of [...byLayer].sort((a, b) => a[0] - b[0])) {
    lines.push(`  subgraph cluster_L${layer} {`, `    label="layer ${layer}"; color="#cccccc";`);
    for (const n of ns) {
      const t = Math.abs(n.score) / maxAbs;
      const hex = Math.round(255 - 180 * t)
        .toString(16)
        .padStart(2, '0');
      const fill = n.score >= 0 ? `#ff${hex}${hex}` : `#${hex}${hex}ff`;
      const tok = options.tokenLabels?.[n.position];
      const label =
        `${n.site}${n.unit === undefined ? '' : ` #${n.unit}`}\\npos ${n.position}` +
        `${tok === undefined ? '' : ` ${dotEscape(JSON.stringify(tok))}`}\\n${n.score.toPrecision(3)}`;
      lines.push(`    "${dotEscape(nodeId(n))}" [label="${label}", fillcolor="${fill}"];`);
    }
    lines.push('  }');
  }
  // a can feed b when b sits in a later sub-block and at the same or a later position. That relation is
  // transitive, so only its transitive reduction is drawn: a → b unless some circuit node c lies between them.
  const maxEdges = options.maxEdges ?? 2000;
  const reach = (a: CircuitNode, b: CircuitNode) => rank(b) > rank(a) && b.position >= a.position;
  const sorted = [...nodes].sort((a, b) => rank(a) - rank(b));
  let edges = 0;
  outer: for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length; j++) {
      const a = sorted[i]!;
      const b = sorted[j]!;
      if (!reach(a, b)) continue;
      let between = false;
      for (let k = i + 1; k < j && !between; k++) between = reach(a, sorted[k]!) && reach(sorted[k]!, b);
      if (between) continue;
      if (edges++ >= maxEdges) break outer;
      lines.push(`  "${dotEscape(nodeId(a))}" -> "${dotEscape(nodeId(b))}";`);
    }
  }
  lines.push('}', '');
  return lines.join('\n');
}
