import { FamilyRegistry } from '@relp/loader';
import { expect, it } from 'vitest';
import { MODEL_FAMILIES } from '../src/index.js';

it('claims each supported model_type exactly once, so the loader takes the list as it is', () => {
  const types = MODEL_FAMILIES.flatMap((f) => f.modelTypes);
  expect(new Set(types).size).toBe(types.length);
  expect([...types].sort()).toEqual(
    ['gemma3', 'gemma3_text', 'gpt2', 'gpt_neox', 'llama', 'mistral', 'qwen2'].sort(),
  );
  expect(() => new FamilyRegistry(MODEL_FAMILIES)).not.toThrow();
  expect(MODEL_FAMILIES.map((f) => f.name)).toEqual(['gpt2', 'gpt_neox', 'llama', 'gemma3']);
});
