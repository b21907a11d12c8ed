#!/usr/bin/env bash
# Copies the wallboard's one vendored library (uPlot, version pinned in web/package.json and
# web/package-lock.json) into web/vendor/, where rust-embed picks it up. The copies are
# committed, so building ccswitch needs no npm. `--check` (run by .ci/run) fails if the
# committed copies differ from the pinned package's files.
# Needs `npm ci` in web/ first.
set -euo pipefail
cd "$(dirname "$0")/../web"
src=node_modules/uplot/dist
files=(uPlot.esm.js uPlot.min.css)
if [ ! -d "$src" ]; then
    echo "web/$src missing: run (cd web && npm ci) first" >&2
    exit 1
fi
if [ "${1:-}" = --check ]; then
    status=0
    for f in "${files[@]}"; do
        if ! cmp -s "$src/$f" "vendor/$f"; then
            echo "web/vendor/$f differs from the pinned uplot package: run scripts/web-vendor.sh" >&2
            status=1
        fi
    done
    [ "$status" = 0 ] && echo "web/vendor matches uplot $(node -p 'require("./node_modules/uplot/package.json").version')"
    exit "$status"
fi
mkdir -p vendor
for f in "${files[@]}"; do cp "$src/$f" "vendor/$f"; done
echo "copied uplot $(node -p 'require("./node_modules/uplot/package.json").version') into web/vendor/"
