#!/usr/bin/env node
import { nodeIo } from './io.js';
import { main } from './main.js';

// A reader that closes early (`relp tasks … | head -1`) is the normal end of a pipe, not an error: stop quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

process.exitCode = await main(process.argv.slice(2), nodeIo());
