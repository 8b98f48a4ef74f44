export { type ModelNorms, NORMS_BY_ARCHITECTURE, normsTreated, normsTreatedByPreset } from './norms.js';
export {
  composeRules,
  isPresetName,
  type LrpRuleSet,
  NONE,
  PRESET_NAMES,
  type PresetName,
  presetByName,
  RELP,
  RELP_AH,
} from './presets.js';
export {
  ahRule,
  halfRule,
  IDENTITY_EPS,
  identityRule,
  type LrpRule,
  lnRule,
  plainSoftmaxRule,
  RULES,
  stabilizedDenominator,
} from './rules.js';
