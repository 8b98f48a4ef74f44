import type { ModelFamily } from '@relp/core';
import { ErrorCodes, RelpError } from '@relp/core/errors';

/** Model families by the `model_type` values of config.json they load. */
export class FamilyRegistry {
  private readonly byType = new Map<string, ModelFamily>();

  constructor(families: Iterable<ModelFamily> = []) {
    for (const f of families) this.register(f);
  }

  /**
   * Adds a family. Registering the same family object again is a no-op; a different family claiming a model_type
   * that is already taken is an error (BAD_INPUT), so two packages cannot silently fight over a type.
   */
  register(family: ModelFamily): void {
    for (const t of family.modelTypes) {
      const prev = this.byType.get(t);
      if (prev !== undefined && prev !== family) {
        throw new RelpError(
          ErrorCodes.BadInput,
          `model_type "${t}" is already handled by family "${prev.name}"; cannot register "${family.name}" for it`,
          { details: { modelType: t } },
        );
      }
    }
    for (const t of family.modelTypes) this.byType.set(t, family);
  }

  forModelType(modelType: string): ModelFamily | undefined {
    return this.byType.get(modelType);
  }

  modelTypes(): string[] {
    return [...this.byType.keys()].sort();
  }

  families(): ModelFamily[] {
    return [...new Set(this.byType.values())];
  }
}
