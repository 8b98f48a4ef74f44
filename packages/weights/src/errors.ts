import { ErrorCodes, RelpError } from '@relp/core/errors';

/** A RelpError BAD_MODEL_FILE: every malformed byte sequence ends here. */
export function badFile(message: string, details: Record<string, unknown> = {}): RelpError {
  return new RelpError(ErrorCodes.BadModelFile, message, { details });
}

export function unsupported(message: string, details: Record<string, unknown> = {}): RelpError {
  return new RelpError(ErrorCodes.Unsupported, message, { details });
}

/** A Uint8Array view of bytes given as Uint8Array, ArrayBuffer or another typed-array view (no copy). */
export function asBytes(input: Uint8Array | ArrayBuffer | ArrayBufferView): Uint8Array {
  if (input instanceof Uint8Array) return input;
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  return new Uint8Array(input);
}
