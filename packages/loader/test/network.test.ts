import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type FetchLike, loadModel } from '../src/index.js';
import { httpTimeoutsFromEnv, nodeFs } from '../src/node.js';
import { toyConfig, toyFamily } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'relp-loader-net-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const servers: { server: Server; sockets: Set<Socket> }[] = [];
afterEach(async () => {
  for (const { server, sockets } of servers.splice(0)) {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

/** A server on 127.0.0.1 answering each request with `handle` (which may never answer). */
async function serve(handle: (url: string, res: ServerResponse) => void): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => handle(req.url ?? '', res));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push({ server, sockets });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Every path under `root`, folders marked with a trailing "/". */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(relative(root, p) + (e.isDirectory() ? '/' : ''));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out.sort();
}

let n = 0;
function load(endpoint: string, ms = 300) {
  const cacheDir = join(dir, `cache${n++}`);
  const t0 = performance.now();
  const done = loadModel('acme/toy', {
    fs: nodeFs,
    fetch: globalThis.fetch as unknown as FetchLike,
    cacheDir,
    endpoint,
    timeouts: { firstByteMs: ms, stallMs: ms },
    families: [toyFamily],
  }).then(
    () => ({ error: undefined as unknown, ms: performance.now() - t0 }),
    (error: unknown) => ({ error, ms: performance.now() - t0 }),
  );
  return { cacheDir, done };
}

describe('a hub that does not answer', () => {
  it('accepts the connection and never answers: NOT_AVAILABLE naming the host and the timeout, in seconds', async () => {
    const endpoint = await serve(() => undefined);
    const { cacheDir, done } = load(endpoint);
    const r = await done;
    expect(r.error).toMatchObject({ code: 'NOT_AVAILABLE' });
    const msg = (r.error as Error).message;
    expect(msg).toContain(new URL(endpoint).host);
    expect(msg).toMatch(/did not answer within 300 ms/);
    // One timeout, not one per file.
    expect(r.ms).toBeLessThan(3000);
    expect(tree(dir).filter((p) => p.startsWith(relative(dir, cacheDir)))).toEqual([]);
  });

  it('sends headers, then stalls mid-body: NOT_AVAILABLE, the resumable .part kept, no empty folders', async () => {
    const config = toyConfig();
    const endpoint = await serve((url, res) => {
      if (url.endsWith('/config.json')) {
        res.writeHead(200, { 'content-length': String(config.length) });
        res.end(config);
        return;
      }
      res.writeHead(200, { 'content-length': '1000' });
      res.write(new Uint8Array(10).fill(7)); // then nothing
    });
    const { cacheDir, done } = load(endpoint);
    const r = await done;
    expect(r.error).toMatchObject({ code: 'NOT_AVAILABLE' });
    expect((r.error as Error).message).toMatch(/model\.safetensors was interrupted after 10 bytes/);
    expect((r.error as Error).message).toMatch(/sent nothing for 300 ms/);
    expect(r.ms).toBeLessThan(5000);
    const folder = join(cacheDir, 'hub', 'acme', 'toy', 'main');
    expect(readFileSync(join(folder, 'model.safetensors.part'))).toHaveLength(10);
    expect(tree(cacheDir)).toEqual([
      'hub/',
      'hub/acme/',
      'hub/acme/toy/',
      'hub/acme/toy/main/',
      'hub/acme/toy/main/config.json',
      'hub/acme/toy/main/model.safetensors.part',
    ]);
  });

  it('refuses (HTTP 401, as the hub does for a repository that does not exist): no empty folders left', async () => {
    const endpoint = await serve((_url, res) => {
      res.writeHead(401);
      res.end('Repository not found');
    });
    const { cacheDir, done } = load(endpoint);
    const r = await done;
    expect(r.error).toMatchObject({ code: 'NOT_AVAILABLE', message: /needs authorisation \(HTTP 401\)/ });
    expect(tree(dir).filter((p) => p.startsWith(relative(dir, cacheDir)))).toEqual([]);
  });

  it('RELP_HTTP_TIMEOUT_MS sets both timeouts; anything but a positive whole number is BAD_INPUT', () => {
    expect(httpTimeoutsFromEnv({})).toEqual({ firstByteMs: 30_000, stallMs: 60_000 });
    expect(httpTimeoutsFromEnv({ RELP_HTTP_TIMEOUT_MS: '1500' })).toEqual({
      firstByteMs: 1500,
      stallMs: 1500,
    });
    for (const bad of ['0', '-5', '1e3', 'soon', '99999999999'])
      expect(() => httpTimeoutsFromEnv({ RELP_HTTP_TIMEOUT_MS: bad })).toThrow(
        expect.objectContaining({ code: 'BAD_INPUT' }),
      );
  });
});
