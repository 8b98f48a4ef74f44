import { createReadStream } from 'node:fs';
import { Unzip, UnzipInflate, UnzipPassThrough } from 'fflate';
import type { HashingSink } from './sink.js';

/**
 * Streams one member of a zip file (a wheel) into the sink with fflate's streaming unzip, so neither the wheel nor
 * the member is held whole in memory. `onBytes` gets the total bytes written to the sink so far; a member that
 * inflates past `maxBytes` is an error as soon as it does.
 */
export async function extractMember(
  zipPath: string,
  member: string,
  sink: HashingSink,
  onBytes: (total: number) => void,
  maxBytes = Number.POSITIVE_INFINITY,
): Promise<void> {
  let found = false;
  let failure: unknown;
  let pending: Promise<void> = Promise.resolve();
  let complete = false;
  let lastReport = 0;
  const unzip = new Unzip((file) => {
    if (file.name !== member) return;
    found = true;
    let inflated = 0;
    file.ondata = (err, data, final) => {
      if (failure !== undefined) return;
      if (err) {
        failure = err;
        complete = true;
        return;
      }
      // A member that inflates past what the file can be is refused as it streams, not after it filled the disk.
      inflated += data.length;
      if (inflated > maxBytes) {
        failure = new Error(`it inflates to more than the ${maxBytes} bytes expected`);
        complete = true;
        file.terminate();
        return;
      }
      const copy = data.slice();
      pending = pending.then(async () => {
        await sink.write(copy);
        if (sink.bytes - lastReport >= 1 << 22 || final) {
          lastReport = sink.bytes;
          onBytes(sink.bytes);
        }
      });
      if (final) complete = true;
    };
    file.start();
  });
  unzip.register(UnzipInflate);
  unzip.register(UnzipPassThrough);
  for await (const chunk of createReadStream(zipPath, { highWaterMark: 1 << 20 })) {
    unzip.push(new Uint8Array(chunk as Buffer));
    await pending; // back-pressure: never hold more than a chunk's worth of output
  }
  unzip.push(new Uint8Array(0), true);
  if (!found) throw new Error(`${member} is not in ${zipPath}`);
  await pending;
  if (failure !== undefined) throw new Error(`cannot extract ${member}: ${String(failure)}`);
  if (!complete) throw new Error(`${member} in ${zipPath} is truncated`);
}
