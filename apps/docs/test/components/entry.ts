// The components under test, on a bare page (test/components.test.ts bundles this with Vite).
import '@relp/web/style.css';
import * as circuit from '../../../../packages/web/src/components/circuit-graph.js';
import * as table from '../../../../packages/web/src/components/correlation-table.js';
import * as heatmap from '../../../../packages/web/src/components/heatmap.js';
import * as scatter from '../../../../packages/web/src/components/scatter.js';

(window as unknown as { relpComponents: unknown }).relpComponents = {
  ...circuit,
  ...table,
  ...heatmap,
  ...scatter,
};
document.body.dataset.ready = 'true';
