import { ErrorCodes, RelpError } from '@relp/core/errors';
import { DEFAULT_MAX_HEADER_BYTES } from '@relp/weights';
import type { LoaderFs } from './fs.js';

/**
 * Refuses a safetensors file whose size is not the one its header describes (8 bytes, the header, then the
 * tensors' data and nothing more), from its header alone, so a file of gigabytes behind a small header is not
 * read whole to find out. A header this cannot make sense of is left to the reader, which says exactly why; so is
 * a file system that cannot read a prefix.
 */
export async function checkSafetensorsSize(fs: LoaderFs, path: string): Promise<void> {
  if (fs.readPrefix === undefined) return;
  const head = await fs.readPrefix(path, 8);
  if (head.bytes.length < 8) return;
  const view = new DataView(head.bytes.buffer, head.bytes.byteOffset, 8);
  const headerLen = view.getUint32(0, true);
  if (view.getUint32(4, true) !== 0 || headerLen > DEFAULT_MAX_HEADER_BYTES || 8 + headerLen > head.size)
    return;
  const { bytes } = await fs.readPrefix(path, 8 + headerLen);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8)));
  } catch {
    return;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return;
  let end = 0;
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') continue;
    const e = (entry as { data_offsets?: unknown } | null)?.data_offsets;
    if (!Array.isArray(e) || !Number.isSafeInteger(e[1]) || (e[1] as number) < 0) return;
    end = Math.max(end, e[1] as number);
  }
  const promised = 8 + headerLen + end;
  if (promised === head.size) return;
  throw new RelpError(
    ErrorCodes.BadModelFile,
    `${path} has ${head.size} bytes but its header describes ${promised}: ` +
      (head.size > promised
        ? `${head.size - promised} trailing bytes belong to no tensor`
        : `the file is truncated (${promised - head.size} bytes missing)`),
    { details: { path, size: head.size, described: promised } },
  );
}
