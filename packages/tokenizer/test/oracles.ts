import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'fixtures',
  'tokenizer',
);

export interface OracleCase {
  text: string;
  ids: number[];
  offsets?: Array<[number, number]>;
  decoded: string;
}

export interface Oracle {
  source: string;
  cases: OracleCase[];
  [key: string]: unknown;
}

export function readFixture<T = Oracle>(name: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as T;
}
