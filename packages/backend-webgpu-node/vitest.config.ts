import { defineConfig } from 'vitest/config';
import { relpVitest } from '../../vitest.shared.js';

export default defineConfig(relpVitest());
