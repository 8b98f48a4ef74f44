import { printable } from '@relp/core/errors';
import type { CliIo } from './io.js';

/**
 * Text the CLI prints, made safe for a terminal: control characters and lone surrogates become visible escapes
 * (ESC → \u001b, NUL → \u0000), line breaks and tabs stay. Untrusted strings (a model's architecture or token
 * strings, a JSONL line, a file name, an argument) reach the output in errors, warnings, tables and labels; this
 * is the one place all of them pass. JSON output stays valid and means the same (the escapes are JSON's).
 */
export function printableText(s: string): string {
  return printable(s, '\n\t');
}

const RAW = Symbol('the stream under a printable stream');

type Stream = CliIo['stderr'];

function printableStream<S extends Stream>(stream: S): Stream {
  const out = {
    write: (s: unknown) => stream.write(typeof s === 'string' ? printableText(s) : (s as string)),
    [RAW]: stream,
  };
  return stream.isTTY === undefined ? out : { ...out, isTTY: stream.isTTY };
}

/** `io` whose stdout and stderr print through printableText. */
export function printableIo(io: CliIo): CliIo {
  return { ...io, stdout: printableStream(io.stdout), stderr: printableStream(io.stderr) };
}

/**
 * The stream under a printable one (itself otherwise): the progress bar writes its own cursor escapes to it, and
 * makes its labels printable first.
 */
export function rawStream(stream: Stream): Stream {
  return (stream as { [RAW]?: Stream })[RAW] ?? stream;
}
