export { attribute } from './attribute.js';
export { metricAndSiteGrads } from './gradient.js';
export { planSites, type ScoredKey, type SiteAxes, siteAxes } from './plan.js';
export { Job } from './run.js';
export * from './types.js';
