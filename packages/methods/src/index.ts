export {
  type AuditAgreement,
  type AuditOptions,
  auditRules,
  type Conservation,
  measureConservation,
  type RuleAudit,
  type RuleAuditRow,
  type SplitBatches,
  type SplitName,
  splitPairs,
} from './audit.js';
export { isBiasName, withZeroBiases, zeroBiasFamily } from './bias-free.js';
export {
  type CompareOptions,
  type Comparison,
  comparedMethods,
  compareMethods,
  type MethodAgreement,
} from './compare.js';
export {
  EDGE_METHOD_NAMES,
  EDGE_METHODS,
  type EdgeMethodName,
  type EdgeMethodSettings,
  edgeMethodByName,
  edgeMethodOptions,
  type NamedEdgeMethod,
} from './edges.js';
export {
  checkSettings,
  METHOD_NAMES,
  METHODS,
  type MethodName,
  type MethodSettings,
  methodByName,
  methodOptions,
  type NamedMethod,
  type NamedMethodOptions,
  parseMethodList,
  unusedSettings,
} from './registry.js';
