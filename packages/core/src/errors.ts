/**
 * Every failure relp reports on purpose is a RelpError with a code from this closed set, so callers
 * (the CLI's exit codes, the web demo's messages) can branch on the kind of failure, not on text.
 */
export const ErrorCodes = {
  /** The user gave input that cannot be used (data, flags, prompts, files). */
  BadInput: 'BAD_INPUT',
  /** A site name or layer that the model does not have. */
  UnknownSite: 'UNKNOWN_SITE',
  /** A model file or folder is malformed (safetensors, GGUF, config.json). */
  BadModelFile: 'BAD_MODEL_FILE',
  /** The architecture or a feature of it is not supported. */
  Unsupported: 'UNSUPPORTED',
  /** An LRP rule set lacks a rule for a nonlinearity or gate in the model. */
  MissingRule: 'MISSING_RULE',
  /** Token ids outside the vocabulary, or sequences longer than the context. */
  BadTokens: 'BAD_TOKENS',
  /** A metric produced NaN or infinity. */
  NonFiniteMetric: 'NON_FINITE_METRIC',
  /** No requested backend could be initialised. */
  Backend: 'BACKEND',
  /** Files are missing offline, or a download failed. */
  NotAvailable: 'NOT_AVAILABLE',
  /** A run was stopped through an AbortSignal. */
  Aborted: 'ABORTED',
  /** A bug in relp: an invariant did not hold. */
  Internal: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/**
 * C0 and C1 control characters, DEL, and UTF-16 surrogates that are not half of a pair: what a terminal acts on
 * (ESC starts escape sequences) or cannot show.
 */
const UNPRINTABLE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
  /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * `s` with every control character (C0, DEL, C1) and lone surrogate written as a visible escape (ESC → \u001b,
 * NUL → \u0000), so an untrusted string (a file's architecture name, a JSONL line, a token) cannot move a terminal's
 * cursor, clear it, or forge a line of output. `keep` names characters to leave as they are (the CLI keeps "\n\t"
 * in whole output lines). The escapes are JSON's, so JSON text stays valid JSON with the same value.
 */
export function printable(s: string, keep = ''): string {
  return s.replace(UNPRINTABLE, (c) =>
    keep.includes(c) ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** A RelpError's message is always printable(): untrusted parts of it cannot act on a terminal. */
export class RelpError extends Error {
  override readonly name = 'RelpError';
  readonly code: ErrorCode;
  /** Structured facts about the failure (file offsets, site names, line numbers). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(printable(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  /** True when the error is the user's to fix (bad input of any kind) rather than relp's. */
  get isUserError(): boolean {
    return this.code !== ErrorCodes.Internal;
  }
}

export function isRelpError(e: unknown, code?: ErrorCode): e is RelpError {
  return e instanceof RelpError && (code === undefined || e.code === code);
}

/** Throws an Internal RelpError when an invariant fails. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new RelpError(ErrorCodes.Internal, message);
}

export function badInput(message: string, details?: Record<string, unknown>): RelpError {
  return new RelpError(ErrorCodes.BadInput, message, details === undefined ? {} : { details });
}
