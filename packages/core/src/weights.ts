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
  /**
   * A tensor's shape without reading its data (undefined when absent), for maps whose `get` converts (e.g.
   * dequantises) on demand: `WeightReader` then checks every shape first and reads each tensor only when the
   * model builds it, so a load never holds every host array at once. Where a map has it, `get` of a name with a
   * shape must not fail for any reason the map could have told from the file alone.
   */
  shape?(name: string): readonly number[] | undefined;
}

export function weightMapFromRecord(record: Readonly<Record<string, HostTensor>>): WeightMap {
  return {
    get: (name) => record[name],
    names: () => Object.keys(record),
  };
}
