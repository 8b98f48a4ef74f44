export { chooseBackend, nodeBackendLoaders } from './backends.js';
export { type CliIo, nodeIo } from './io.js';
export { buildProgram, EXIT, main } from './main.js';
export { writeFileAtomic, writeFolderAtomic } from './output.js';
export { parseSites } from './sites.js';
