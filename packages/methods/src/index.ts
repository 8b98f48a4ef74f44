export {
  type CompareOptions,
  type Comparison,
  comparedMethods,
  compareMethods,
  type MethodAgreement,
} from './compare.js';
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
