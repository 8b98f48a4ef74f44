import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';

/** Streams bytes into a temporary file, hashing them on the way; `close` gives the SHA-256 (hex). */
export class HashingSink {
  private readonly hash = createHash('sha256');
  private readonly out: WriteStream;
  bytes = 0;
  constructor(readonly tmpPath: string) {
    this.out = createWriteStream(tmpPath);
  }
  async write(chunk: Uint8Array): Promise<void> {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    if (!this.out.write(chunk)) await new Promise<void>((r) => this.out.once('drain', () => r()));
  }
  async close(): Promise<string> {
    await new Promise<void>((resolve, reject) =>
      this.out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    return this.hash.digest('hex');
  }
}
