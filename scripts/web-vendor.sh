#!/usr/bin/env bash
# Puts the web pages' vendored libraries into web/vendor/, where rust-embed picks them up:
#   - uPlot (the wallboard's charts): its dist files, copied;
#   - JsSIP (the agent desk's SIP phone): the npm package ships CommonJS only, so it is
#     bundled into one ES module (web/vendor/jssip.esm.js) with esbuild.
# Versions are pinned in web/package.json and web/package-lock.json (esbuild too, so the
# bundle is byte-for-byte reproducible). The copies are committed, so building ccswitch needs
# no npm. `--check` (run by .ci/run) fails if the committed files differ from what the pinned
# packages give. Needs `npm ci` in web/ first.
set -euo pipefail
cd "$(dirname "$0")/../web"
src=node_modules/uplot/dist
files=(uPlot.esm.js uPlot.min.css)
for d in "$src" node_modules/jssip/lib node_modules/esbuild; do
    if [ ! -d "$d" ]; then
        echo "web/$d missing: run (cd web && npm ci) first" >&2
        exit 1
    fi
done
version() { node -p "require('./node_modules/$1/package.json').version"; }
# JsSIP's entry point bundled for browsers into $1.
bundle_jssip() {
    node_modules/.bin/esbuild node_modules/jssip/lib/JsSIP.js --bundle --format=esm \
        --platform=browser --target=es2020 --minify --legal-comments=inline \
        --log-level=warning --outfile="$1"
}
if [ "${1:-}" = --check ]; then
    status=0
    for f in "${files[@]}"; do
        if ! cmp -s "$src/$f" "vendor/$f"; then
            echo "web/vendor/$f differs from the pinned uplot package: run scripts/web-vendor.sh" >&2
            status=1
        fi
    done
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    bundle_jssip "$tmp/jssip.esm.js"
    if ! cmp -s "$tmp/jssip.esm.js" vendor/jssip.esm.js; then
        echo "web/vendor/jssip.esm.js differs from the pinned jssip package's bundle: run scripts/web-vendor.sh" >&2
        status=1
    fi
    if ! cmp -s node_modules/jssip/LICENSE.md vendor/jssip.LICENSE.md; then
        echo "web/vendor/jssip.LICENSE.md differs from the pinned jssip package's: run scripts/web-vendor.sh" >&2
        status=1
    fi
    [ "$status" = 0 ] && echo "web/vendor matches uplot $(version uplot) and jssip $(version jssip) (esbuild $(version esbuild))"
    exit "$status"
fi
mkdir -p vendor
for f in "${files[@]}"; do cp "$src/$f" "vendor/$f"; done
bundle_jssip vendor/jssip.esm.js
cp node_modules/jssip/LICENSE.md vendor/jssip.LICENSE.md
echo "copied uplot $(version uplot) and bundled jssip $(version jssip) (esbuild $(version esbuild)) into web/vendor/"
