export { type CachedModel, listModels, type ManifestSource, type ModelManifest } from './cache.js';
export type { FetchedModel, ProvisionOptions, ProvisionPhase, ProvisionProgress } from './options.js';
export type { PipRunner } from './pip.js';
export { fetchModel, resolveModelAlias } from './provision.js';
export * from './registry.js';
