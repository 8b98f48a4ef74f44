import { runnableGgufArchitectures, supportedModelTypes } from '../families.js';

/** "a, b and c". */
const listed = (xs: readonly string[]) =>
  xs.length <= 1 ? (xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`;

/** An error as the page shows it: a code, a title, the message, and what to do about it. */
export interface ShownError {
  readonly code: string;
  readonly title: string;
  readonly message: string;
  readonly hint?: string;
}

const OOM =
  /out of memory|failed to allocate|allocation failed|array buffer allocation|(cannot|could not) allocate|\boom\b|Invalid array length|device (was )?lost/i;

/**
 * Turns anything thrown by loading or running into a message for people: relp's typed errors keep their code
 * (UNSUPPORTED, BAD_INPUT, …), and the browser's allocation failures (WASM heap, WebGPU buffers, ArrayBuffer
 * limits) become OUT_OF_MEMORY with advice.
 */
export function describeError(e: unknown): ShownError {
  const err = e as { code?: unknown; message?: unknown; name?: unknown; details?: unknown } | undefined;
  const message = typeof err?.message === 'string' ? err.message : String(e);
  const code = typeof err?.code === 'string' && /^[A-Z_]+$/.test(err.code) ? err.code : undefined;
  if (code === 'UNSUPPORTED') {
    const supported = (err?.details as { supported?: unknown } | undefined)?.supported;
    const gguf = runnableGgufArchitectures(
      Array.isArray(supported) ? supported.map(String) : ['llama', 'qwen2', 'gemma3'],
    );
    return {
      code,
      title: 'Unsupported model',
      message,
      hint: /gguf/i.test(message)
        ? `From GGUF files the demo runs the ${listed(gguf)} architectures stored as F32, F16, BF16, Q4_0 to Q8_0 or K-quants (Q2_K to Q6_K), with the tokenizer in the file. For other models pick their Hugging Face folder, if relp supports the family.`
        : `The demo runs the model types (config.json "model_type") ${listed(supportedModelTypes())}: a Hugging Face id or folder with safetensors weights, or a GGUF file.`,
    };
  }
  if (code === 'BAD_INPUT' && /token lengths|tokenise to different lengths|length-mismatch/.test(message)) {
    return {
      code: 'UNEQUAL_LENGTHS',
      title: 'Prompt pair of unequal token lengths',
      message,
      hint: 'Patching pairs positions one to one: make the corrupt prompt differ from the clean one by words that take as many tokens (e.g. swap one name for another single-token name).',
    };
  }
  if (code === 'ABORTED') return { code, title: 'Cancelled', message };
  if (code === 'NOT_AVAILABLE')
    return {
      code,
      title: 'Could not download the model',
      message,
      hint: 'Check the connection, or pick local files instead.',
    };
  if (code === 'BAD_MODEL_FILE') {
    return {
      code,
      title: 'Bad model file',
      message,
      hint: 'The file could not be read as a model: it may be incomplete (an interrupted download leaves a truncated file), damaged, or not in the format its name says. Download it again, or pick another file.',
    };
  }
  if (code === 'BACKEND') return { code, title: 'Backend problem', message, hint: 'Try another backend.' };
  if ((err?.name === 'RangeError' && !code) || OOM.test(message)) {
    return {
      code: 'OUT_OF_MEMORY',
      title: 'Out of memory',
      message,
      hint: 'Use a smaller model, fewer prompts, fewer methods or sites, or a smaller patching batch; WebGPU memory is separate from the WASM heap, so switching backend can help.',
    };
  }
  if (code) return { code, title: code.replaceAll('_', ' ').toLowerCase(), message };
  return { code: 'INTERNAL', title: 'Unexpected error', message };
}
