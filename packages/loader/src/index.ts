export * from './families.js';
export * from './fetch.js';
export * from './fs.js';
export * from './hash.js';
export * from './hub.js';
export * from './load.js';
export * from './resolve.js';
