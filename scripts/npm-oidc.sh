#!/bin/sh
# oidc-provider from npm, the real OpenID Connect provider the sign-in test runs
# (tests/signin/oidc_provider.mjs); pinned, installed into .cache/npm-oidc,
# never committed. The test fails loudly, naming this script, when it is missing.
set -eu
cd "$(dirname "$0")/.."
PREFIX=.cache/npm-oidc  # its own prefix: an npm install --no-save into a shared one prunes it
OIDC_PROVIDER=9.13.3
if [ ! -f "$PREFIX/node_modules/oidc-provider/package.json" ] \
   || ! grep -q "\"version\": \"$OIDC_PROVIDER\"" "$PREFIX/node_modules/oidc-provider/package.json"; then
    command -v npm >/dev/null || { echo "npm is needed for the OpenID Connect test's oidc-provider (Debian npm)" >&2; exit 1; }
    mkdir -p "$PREFIX"
    npm install --prefix "$PREFIX" --no-save --no-audit --no-fund "oidc-provider@$OIDC_PROVIDER" >&2
fi
