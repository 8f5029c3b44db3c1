#!/bin/sh
# npm packages the browser tests inject (pinned; installed into the gitignored .cache/npm,
# never committed). Tests needing them fail loudly, naming this script, when missing.
set -eu
cd "$(dirname "$0")/.."
PREFIX=.cache/npm
AXE_CORE=4.14.1
if [ ! -f "$PREFIX/node_modules/axe-core/axe.min.js" ] \
   || ! grep -q "\"version\": \"$AXE_CORE\"" "$PREFIX/node_modules/axe-core/package.json"; then
    command -v npm >/dev/null || { echo "npm is needed for the browser tests' axe-core (Debian npm)" >&2; exit 1; }
    mkdir -p "$PREFIX"
    npm install --prefix "$PREFIX" --no-save --no-audit --no-fund "axe-core@$AXE_CORE" >&2
fi
