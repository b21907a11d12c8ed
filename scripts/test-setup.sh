#!/usr/bin/env bash
# Prepares what the end-to-end tests need beyond cargo: a Python venv with the
# PJSIP bindings (pjsua2) used as scripted SIP callers. Idempotent: a second run
# only checks that `import pjsua2` still works.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CCSWITCH_E2E_VENV:-$root/.venv-e2e}"
# The pjsua2-python wheels are built per CPython version; 3.11 is what Debian 12 ships.
pjsua_pkg="pjsua2-python==2.15.1.post1"

pick_python() {
    for py in "${CCSWITCH_E2E_PYTHON:-}" python3.11 /usr/bin/python3 python3; do
        [ -n "$py" ] || continue
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    echo "test-setup: no python3 with the venv module found (apt-get install -y python3-venv)" >&2
    return 1
}

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pjsua2' >/dev/null 2>&1; then
    echo "test-setup: $venv ready (pjsua2 importable)"
    exit 0
fi

py="$(pick_python)"
echo "test-setup: creating $venv with $py"
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pjsua_pkg"
"$venv/bin/python" -c 'import pjsua2; print("test-setup: pjsua2 OK")' 2>/dev/null | tail -1
