import { isRelpError, METHOD_KNOBS } from '@relp/core';
import { RELP, RELP_AH } from '@relp/lrp-rules';
import { describe, expect, it } from 'vitest';
import {
  checkSettings,
  comparedMethods,
  METHOD_NAMES,
  METHODS,
  methodByName,
  methodOptions,
  parseMethodList,
  unusedSettings,
} from '../src/index.js';

const badInput = (f: () => unknown, message: RegExp) => {
  try {
    f();
  } catch (e) {
    expect(isRelpError(e, 'BAD_INPUT'), String(e)).toBe(true);
    expect((e as Error).message).toMatch(message);
    return;
  }
  throw new Error('expected BAD_INPUT');
};

describe('the methods registry', () => {
  it('names every method once, in the order of METHOD_NAMES, each with a definition in docs/method.md', () => {
    expect(METHODS.map((m) => m.name)).toEqual([...METHOD_NAMES]);
    const all = METHODS.flatMap((m) => [m.name, ...m.aliases]);
    expect(new Set(all).size).toBe(all.length);
    for (const m of METHODS) {
      expect(m.section).toMatch(/^§\d+/);
      expect(m.summary.length).toBeGreaterThan(20);
      expect(Object.keys(METHOD_KNOBS)).toContain(m.kind);
    }
  });

  it('maps relp / relp-ah to attribution patching with their presets, and atp to no rules at all', () => {
    expect(methodByName('relp')).toMatchObject({ kind: 'atp', rules: RELP });
    expect(methodByName('relp-ah')).toMatchObject({ kind: 'atp', rules: RELP_AH });
    expect(methodByName('atp').rules).toBeUndefined();
    expect(methodByName('ig')).toMatchObject({ kind: 'ig' });
    expect(methodByName('ap')).toBe(methodByName('activation-patching'));
  });

  it('parses a list: aliases resolve, each method once, in the order given; unknown names are BAD_INPUT', () => {
    expect(parseMethodList(' relp, ap,atp,activation-patching,relp ').map((m) => m.name)).toEqual([
      'relp',
      'activation-patching',
      'atp',
    ]);
    badInput(
      () => parseMethodList('atp,gradcam'),
      /unknown method 'gradcam'; choose one of activation-patching, atp, relp, relp-ah, relp-cp, attnlrp, ig/,
    );
    badInput(() => parseMethodList(' , '), /no methods given/);
  });

  it('gives each method only the settings it takes', () => {
    const settings = {
      igSteps: 3,
      igInterpolate: 'site',
      maxBatchRows: 8,
      patchingStrategy: 'naive',
    } as const;
    expect(methodOptions('atp', settings)).toEqual({ method: 'atp', label: 'atp' });
    expect(methodOptions('relp', settings)).toEqual({ method: 'atp', label: 'relp', rules: RELP });
    expect(methodOptions('ig', settings)).toEqual({
      method: 'ig',
      label: 'ig',
      igSteps: 3,
      igInterpolate: 'site',
      maxBatchRows: 8,
    });
    expect(methodOptions('ap', settings)).toEqual({
      method: 'activation-patching',
      label: 'activation-patching',
      maxBatchRows: 8,
      patchingStrategy: 'naive',
    });
    expect(methodOptions('ig')).toEqual({ method: 'ig', label: 'ig' });
  });

  it('names a setting that none of the methods takes, and refuses it', () => {
    const gradientOnly = parseMethodList('atp,relp');
    expect(unusedSettings(gradientOnly, { igSteps: 4, maxBatchRows: 2 })).toEqual([
      'igSteps',
      'maxBatchRows',
    ]);
    expect(unusedSettings(parseMethodList('atp,ig'), { igSteps: 4, maxBatchRows: 2 })).toEqual([]);
    expect(unusedSettings(gradientOnly, { igSteps: undefined })).toEqual([]);
    badInput(
      () => checkSettings(gradientOnly, { igSteps: 4 }, (s) => `--${s}`),
      /^--igSteps applies to ig, none of which is among atp, relp$/,
    );
    badInput(
      () => checkSettings(gradientOnly, { maxBatchRows: 4 }),
      /maxBatchRows applies to activation-patching, ig/,
    );
  });

  it('a comparison runs activation patching first (always, or only when listed), then each method once', () => {
    const names = (ms: { name: string }[]) => ms.map((m) => m.name);
    expect(names(comparedMethods(['relp', 'atp', 'relp']))).toEqual(['activation-patching', 'relp', 'atp']);
    expect(names(comparedMethods(['ig', 'ap'], 'if-listed'))).toEqual(['activation-patching', 'ig']);
    expect(names(comparedMethods(['ig'], 'if-listed'))).toEqual(['ig']);
    badInput(() => comparedMethods([], 'if-listed'), /choose at least one method/);
  });
});
