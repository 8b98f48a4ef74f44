/** SHA-256 through Web Crypto (global in browsers and Node ≥ 19), as lowercase hex. */
export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (subtle === undefined) throw new Error('Web Crypto (crypto.subtle) is not available to compute SHA-256');
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const digest = await subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The content hash of a checkpoint's weight files: for one file, the SHA-256 of its bytes (equal to the Hugging
 * Face LFS oid); for several, the SHA-256 of the lines "<sha256>  <name>\n" sorted by name (sha256sum's format).
 * Returned as "sha256:<hex>".
 */
export async function contentHash(
  files: ReadonlyArray<{ readonly name: string; readonly sha256: string }>,
): Promise<string> {
  if (files.length === 1) return `sha256:${files[0]!.sha256}`;
  const sorted = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return `sha256:${await sha256Hex(sorted.map((f) => `${f.sha256}  ${f.name}\n`).join(''))}`;
}
