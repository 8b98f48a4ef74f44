import { linePlotSvg } from './plots.js';

export interface CurvePoint {
  readonly threshold: number;
  readonly nodes: number;
  readonly faithfulness: number;
  readonly completeness: number;
}

/** Faithfulness and completeness against the number of nodes, one series per method (one SVG each). */
export function circuitCurvesSvg(curves: Readonly<Record<string, readonly CurvePoint[]>>): {
  faithfulness: string;
  completeness: string;
} {
  const series = (k: 'faithfulness' | 'completeness') =>
    Object.entries(curves).map(([name, pts]) => ({
      name,
      points: pts.filter((p) => p.nodes > 0).map((p) => [p.nodes, p[k]] as const),
    }));
  return {
    faithfulness: linePlotSvg({
      title: 'Faithfulness vs circuit size',
      series: series('faithfulness'),
      xLabel: 'nodes in the circuit (log)',
      yLabel: 'faithfulness',
      xLog: true,
    }),
    completeness: linePlotSvg({
      title: 'Completeness (circuit ablated) vs circuit size',
      series: series('completeness'),
      xLabel: 'nodes in the circuit (log)',
      yLabel: 'm(M∖C) normalised',
      xLog: true,
    }),
  };
}
