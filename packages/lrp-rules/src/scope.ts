import {
  type ActivationKind,
  checkRulesCover,
  ErrorCodes,
  type LanguageModel,
  NO_RULES,
  plainSlots,
  RelpError,
  type RuleSet,
  type RunContext,
  type SlotFunctions,
} from '@relp/core';
import type * as tf from '@tensorflow/tfjs-core';

/**
 * A run context that answers the rule slots with `rules` and forwards everything else (sites, caches, deltas,
 * slot counters) to `ctx`. `ctx` itself is not changed. A context that already carries another rule set is an
 * error: two rule sets for one run would be ambiguous.
 */
export function contextWithRules(ctx: RunContext, rules: RuleSet): RunContext {
  if (ctx.rules === rules) return ctx;
  if (ctx.rules !== NO_RULES) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `the run context already uses rule set '${ctx.rules.name}'; cannot also apply '${rules.name}'`,
      { details: { context: ctx.rules.name, scope: rules.name } },
    );
  }
  const slots: SlotFunctions = { ...plainSlots, ...rules.slots };
  const overrides: Partial<Record<PropertyKey, unknown>> = {
    rules,
    normScale(xc: tf.Tensor, eps: number): tf.Tensor {
      return slots.normScale(xc, eps);
    },
    normalize(xc: tf.Tensor, scale: tf.Tensor): tf.Tensor {
      ctx.slotCalls.normalize++;
      return slots.normalize(xc, scale);
    },
    activation(kind: ActivationKind, x: tf.Tensor): tf.Tensor {
      ctx.slotCalls.activation++;
      return slots.activation(kind, x);
    },
    gateProduct(a: tf.Tensor, up: tf.Tensor): tf.Tensor {
      ctx.slotCalls.gate_product++;
      return slots.gateProduct(a, up);
    },
    attentionSoftmax(scores: tf.Tensor): tf.Tensor {
      ctx.slotCalls.attention_softmax++;
      return slots.attentionSoftmax(scores);
    },
  };
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(ctx, {
    get(target, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop];
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      let b = bound.get(prop);
      if (b === undefined) {
        b = (v as (...a: unknown[]) => unknown).bind(target);
        bound.set(prop, b);
      }
      return b;
    },
    set() {
      return false;
    },
  });
}

/** A model view whose runs use a rule set, valid until the scope closes. */
export interface RuleScope<M extends LanguageModel> {
  /** The view: the same model, except that every forward pass runs with the scope's rules. */
  readonly model: M;
  readonly rules: RuleSet;
  /** Ends the scope: the view refuses to run afterwards. Idempotent. */
  close(): void;
  readonly closed: boolean;
}

/**
 * Opens a rule scope on a model: checks that the rules cover every nonlinearity the model declares (MISSING_RULE
 * otherwise), and returns a view whose `forward` installs the rules in the run's context. The model itself is
 * never changed, so closing the scope (or never closing it) leaves the model's own runs plain. Prefer
 * `withRules`, which closes the scope for you.
 */
export function openRuleScope<M extends LanguageModel>(model: M, rules: RuleSet): RuleScope<M> {
  checkRulesCover(rules, model.nonlinearities, model.architecture);
  let closed = false;
  const assertOpen = (what: string): void => {
    if (closed) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `${what} on a model view whose rule scope '${rules.name}' has ended; use the model itself`,
        { details: { rules: rules.name } },
      );
    }
  };
  const overrides: Partial<Record<PropertyKey, unknown>> = {
    forward(input: Parameters<M['forward']>[0], ctx: RunContext, options?: Parameters<M['forward']>[2]) {
      assertOpen('forward');
      return model.forward(input, contextWithRules(ctx, rules), options);
    },
    embed(tokens: tf.Tensor2D) {
      assertOpen('embed');
      return model.embed(tokens);
    },
    dispose() {
      // The view does not own the weights: disposing them is the model owner's business.
    },
  };
  const bound = new Map<PropertyKey, unknown>();
  const view = new Proxy(model, {
    get(target, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop];
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      let b = bound.get(prop);
      if (b === undefined) {
        b = (v as (...a: unknown[]) => unknown).bind(target);
        bound.set(prop, b);
      }
      return b;
    },
    set() {
      return false;
    },
  });
  return {
    model: view,
    rules,
    close() {
      closed = true;
    },
    get closed() {
      return closed;
    },
  };
}

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return (
    (typeof v === 'object' || typeof v === 'function') &&
    v !== null &&
    typeof (v as { then?: unknown }).then === 'function'
  );
}

/**
 * Runs `fn` with a view of `model` whose runs use `rules`, and ends the scope when `fn` returns, throws, or (for
 * an async `fn`) settles. Raises MISSING_RULE on entry when the rules lack a rule for a nonlinearity of the model.
 * The model is never mutated: after the scope, and after a scope that threw, its runs are plain again.
 */
export function withRules<M extends LanguageModel, T>(
  model: M,
  rules: RuleSet,
  fn: (model: M) => Promise<T>,
): Promise<T>;
export function withRules<M extends LanguageModel, T>(model: M, rules: RuleSet, fn: (model: M) => T): T;
export function withRules<M extends LanguageModel, T>(model: M, rules: RuleSet, fn: (model: M) => T): T {
  const scope = openRuleScope(model, rules);
  let result: T;
  try {
    result = fn(scope.model);
  } catch (e) {
    scope.close();
    throw e;
  }
  if (isPromiseLike(result)) {
    return Promise.resolve(result).finally(() => scope.close()) as T;
  }
  scope.close();
  return result;
}
