export { attribute } from './attribute.js';
export { metricAndSiteGrads } from './gradient.js';
export { planSites, type ScoredKey } from './plan.js';
export { Job, type JobRuns } from './run.js';
export * from './types.js';
