/** The dtypes of the safetensors format whose elements are whole bytes. */
export const SAFETENSORS_DTYPES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPES;

/** The dtypes that convert to float32 (`get`): F32 exactly, F16/BF16 exactly, F64 rounded to nearest. */
export const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'F64'];

export function isSafetensorsDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === 'string' && Object.hasOwn(SAFETENSORS_DTYPES, s);
}

export function dtypeSize(d: SafetensorsDtype): number {
  return SAFETENSORS_DTYPES[d];
}

export function isFloatDtype(d: SafetensorsDtype): boolean {
  return FLOAT_DTYPES.includes(d);
}
