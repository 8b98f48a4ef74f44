/** The part of the Fetch API the loader uses; the global `fetch` satisfies it, tests pass a fake. */
export type FetchLike = (
  url: string,
  init?: { readonly headers?: Record<string, string>; readonly signal?: AbortSignal },
) => Promise<ResponseLike>;

export interface ResponseLike {
  readonly ok: boolean;
  readonly status: number;
  readonly statusText?: string;
  readonly headers: { get(name: string): string | null };
  readonly body: ReadableStream<Uint8Array> | null;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** How long a download waits on a server that says nothing. */
export interface HttpTimeouts {
  /** From sending a request to its response's headers (connecting included). */
  readonly firstByteMs: number;
  /** The longest a response body may go without a byte. */
  readonly stallMs: number;
}

export const DEFAULT_HTTP_TIMEOUTS: HttpTimeouts = { firstByteMs: 30_000, stallMs: 60_000 };

/** The host of a URL, for messages ("huggingface.co", "127.0.0.1:8080"). */
export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

const seconds = (ms: number) => (ms >= 1000 ? `${+(ms / 1000).toFixed(1)} s` : `${ms} ms`);

/** Thrown when a server stays silent past a timeout; says which host, how long, and how to wait longer. */
export class HttpTimeoutError extends Error {
  override readonly name = 'HttpTimeoutError';
  constructor(
    readonly host: string,
    readonly phase: 'response' | 'body',
    readonly ms: number,
  ) {
    super(
      phase === 'response'
        ? `${host} did not answer within ${seconds(ms)} (RELP_HTTP_TIMEOUT_MS sets how long to wait)`
        : `${host} sent nothing for ${seconds(ms)} in the middle of a download (RELP_HTTP_TIMEOUT_MS sets how long to wait)`,
    );
  }
}

/**
 * Fetches with a deadline for the response's headers: past `firstByteMs` the request is aborted and
 * HttpTimeoutError thrown. The caller's signal still aborts it (its own error then, not a timeout).
 * `abort` aborts the request later (a stalled body).
 */
export async function fetchWithTimeout(
  fetchFn: FetchLike,
  url: string,
  headers: Record<string, string>,
  timeouts: HttpTimeouts,
  signal: AbortSignal | undefined,
): Promise<{ res: ResponseLike; abort: () => void; signal: AbortSignal }> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new HttpTimeoutError(hostOf(url), 'response', timeouts.firstByteMs));
  }, timeouts.firstByteMs);
  // A fetch that ignores its signal must not outlive the deadline either.
  const deadline = new Promise<never>((_, reject) =>
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }),
  );
  deadline.catch(() => undefined);
  try {
    const res = await Promise.race([fetchFn(url, { headers, signal: controller.signal }), deadline]);
    return { res, abort: () => controller.abort(), signal: controller.signal };
  } catch (e) {
    if (timedOut) throw new HttpTimeoutError(hostOf(url), 'response', timeouts.firstByteMs);
    throw e;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * A response body as chunks; a body silent for `stallMs` aborts the request (`abort`) and throws
 * HttpTimeoutError.
 */
export async function* bodyChunks(
  res: ResponseLike,
  url: string,
  stallMs: number,
  abort: () => void,
): AsyncGenerator<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const withDeadline = <T>(p: Promise<T>): Promise<T> =>
    Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new HttpTimeoutError(hostOf(url), 'body', stallMs)); // first, so it is the error raised
          abort();
        }, stallMs);
      }),
    ]).finally(() => clearTimeout(timer));
  if (res.body === null) {
    yield new Uint8Array(await withDeadline(res.arrayBuffer()));
    return;
  }
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await withDeadline(reader.read());
      if (done) return;
      if (value !== undefined && value.byteLength > 0) yield value;
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}
