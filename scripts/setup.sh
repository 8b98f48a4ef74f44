#!/usr/bin/env bash
# Installs everything relp's tests and demo need on a fresh Debian machine with Node.js 20: pnpm (pinned), the
# workspace's packages, and Debian's Chromium for the browser tests. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(node -p "require('./package.json').packageManager.split('@')[1]")
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "$want" ]; then
  npm install -g --allow-scripts=pnpm "pnpm@$want" >/dev/null 2>&1 || npm install -g "pnpm@$want"
fi
pnpm install --frozen-lockfile
