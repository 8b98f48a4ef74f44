/**
 * A host-side tensor as weight readers produce it (float32 after conversion). Core and models depend only on
 * this shape, not on any reader, so weights can come from safetensors, GGUF, or memory.
 */
export interface HostTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Named weights of one checkpoint. */
export interface WeightMap {
  get(name: string): HostTensor | undefined;
  names(): Iterable<string>;
}

export function weightMapFromRecord(record: Readonly<Record<string, HostTensor>>): WeightMap {
  return {
    get: (name) => record[name],
    names: () => Object.keys(record),
  };
}
