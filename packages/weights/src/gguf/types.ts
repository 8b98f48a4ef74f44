/**
 * GGUF constants: metadata value types and ggml tensor types with their block layouts (ggml's `ggml_type`,
 * `GGML_QUANT_SIZES` in gguf-py). A tensor of `n` elements of a block type takes `n / blockSize * typeSize` bytes,
 * and its innermost dimension must be a multiple of `blockSize`.
 */

export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

export const GGUF_VALUE_TYPE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(GgufValueType).map(([k, v]) => [v, k]),
);

/** ggml tensor types (the numbering is part of the file format). */
export const GgmlType = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q8_1: 9,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  Q8_K: 15,
  IQ2_XXS: 16,
  IQ2_XS: 17,
  IQ3_XXS: 18,
  IQ1_S: 19,
  IQ4_NL: 20,
  IQ3_S: 21,
  IQ2_S: 22,
  IQ4_XS: 23,
  I8: 24,
  I16: 25,
  I32: 26,
  I64: 27,
  F64: 28,
  IQ1_M: 29,
  BF16: 30,
  TQ1_0: 34,
  TQ2_0: 35,
  MXFP4: 39,
} as const;
export type GgmlType = (typeof GgmlType)[keyof typeof GgmlType];

export interface GgmlTypeInfo {
  readonly name: string;
  /** Elements per block (1 for plain types). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

const QK_K = 256;

export const GGML_TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map<number, GgmlTypeInfo>([
  [GgmlType.F32, { name: 'F32', blockSize: 1, typeSize: 4 }],
  [GgmlType.F16, { name: 'F16', blockSize: 1, typeSize: 2 }],
  [GgmlType.Q4_0, { name: 'Q4_0', blockSize: 32, typeSize: 2 + 16 }],
  [GgmlType.Q4_1, { name: 'Q4_1', blockSize: 32, typeSize: 2 + 2 + 16 }],
  [GgmlType.Q5_0, { name: 'Q5_0', blockSize: 32, typeSize: 2 + 4 + 16 }],
  [GgmlType.Q5_1, { name: 'Q5_1', blockSize: 32, typeSize: 2 + 2 + 4 + 16 }],
  [GgmlType.Q8_0, { name: 'Q8_0', blockSize: 32, typeSize: 2 + 32 }],
  [GgmlType.Q8_1, { name: 'Q8_1', blockSize: 32, typeSize: 4 + 4 + 32 }],
  [GgmlType.Q2_K, { name: 'Q2_K', blockSize: QK_K, typeSize: 2 + 2 + QK_K / 16 + QK_K / 4 }],
  [GgmlType.Q3_K, { name: 'Q3_K', blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + 12 }],
  [GgmlType.Q4_K, { name: 'Q4_K', blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + 12 }],
  [GgmlType.Q5_K, { name: 'Q5_K', blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 8 + 12 }],
  [GgmlType.Q6_K, { name: 'Q6_K', blockSize: QK_K, typeSize: 2 + QK_K / 2 + QK_K / 4 + QK_K / 16 }],
  [GgmlType.Q8_K, { name: 'Q8_K', blockSize: QK_K, typeSize: 4 + QK_K + QK_K / 8 }],
  [GgmlType.IQ2_XXS, { name: 'IQ2_XXS', blockSize: QK_K, typeSize: 2 + QK_K / 4 }],
  [GgmlType.IQ2_XS, { name: 'IQ2_XS', blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 32 }],
  [GgmlType.IQ3_XXS, { name: 'IQ3_XXS', blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 }],
  [GgmlType.IQ1_S, { name: 'IQ1_S', blockSize: QK_K, typeSize: 2 + QK_K / 8 + QK_K / 16 }],
  [GgmlType.IQ4_NL, { name: 'IQ4_NL', blockSize: 32, typeSize: 2 + 16 }],
  [GgmlType.IQ3_S, { name: 'IQ3_S', blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4 }],
  [GgmlType.IQ2_S, { name: 'IQ2_S', blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 16 }],
  [GgmlType.IQ4_XS, { name: 'IQ4_XS', blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 64 }],
  [GgmlType.I8, { name: 'I8', blockSize: 1, typeSize: 1 }],
  [GgmlType.I16, { name: 'I16', blockSize: 1, typeSize: 2 }],
  [GgmlType.I32, { name: 'I32', blockSize: 1, typeSize: 4 }],
  [GgmlType.I64, { name: 'I64', blockSize: 1, typeSize: 8 }],
  [GgmlType.F64, { name: 'F64', blockSize: 1, typeSize: 8 }],
  [GgmlType.IQ1_M, { name: 'IQ1_M', blockSize: QK_K, typeSize: QK_K / 8 + QK_K / 16 + QK_K / 32 }],
  [GgmlType.BF16, { name: 'BF16', blockSize: 1, typeSize: 2 }],
  [GgmlType.TQ1_0, { name: 'TQ1_0', blockSize: QK_K, typeSize: 2 + 4 * 13 }],
  [GgmlType.TQ2_0, { name: 'TQ2_0', blockSize: QK_K, typeSize: 2 + 64 }],
  [GgmlType.MXFP4, { name: 'MXFP4', blockSize: 32, typeSize: 1 + 16 }],
]);

/** The name of a ggml type id ("Q4_K"), or "type N" for an unknown one. */
export function ggmlTypeName(type: number): string {
  return GGML_TYPES.get(type)?.name ?? `type ${type}`;
}

/** ggml type id for a name such as "Q4_K" (case-insensitive), or undefined. */
export function ggmlTypeFromName(name: string): number | undefined {
  const upper = name.toUpperCase();
  for (const [id, info] of GGML_TYPES) if (info.name === upper) return id;
  return undefined;
}
