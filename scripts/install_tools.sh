#!/usr/bin/env bash
# Install the Node-based tools into .tools/ (idempotent; does nothing when they are present):
#   azurite  - the Azure Blob emulator the storage tests run against
#   bun/deno - TypeScript runtimes for jobs
#   axe-core - the accessibility checker the browser tests run over every page (never from a CDN)
# Needs node + npm (Node 20) and access to the npm registry. Python tools (moto_server,
# gcp-storage-emulator) come from requirements-dev.txt into .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/node_modules/.bin"
PACKAGES=(azurite@3.35.0 bun@1.4.5 deno@2.9.6 axe-core@4.14.1)

installed_version() {  # the version in node_modules/<name>/package.json, or nothing
  local manifest="$TOOLS/node_modules/$1/package.json"
  [ -f "$manifest" ] || return 0
  sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$manifest" | head -n1
}

missing=()
for spec in "${PACKAGES[@]}"; do
  name="${spec%@*}" want="${spec##*@}"
  [ "$(installed_version "$name")" = "$want" ] || missing+=("$spec")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "install_tools.sh: npm is not installed; install Node.js 20 with npm (e.g. apt-get install nodejs npm) and rerun" >&2
    exit 1
  fi
  echo "install_tools.sh: installing ${missing[*]} into $TOOLS" >&2
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund --save-exact "${PACKAGES[@]}" >&2
fi

# Prove every tool runs (bun and deno fetch their platform binary as an npm optional dependency).
fail=0
check() {  # check NAME WANT CMD...
  local name="$1" want="$2" out
  shift 2
  if out="$("$@" 2>&1)" && grep -qF "$want" <<<"$out"; then
    echo "$name $want ok"
  else
    echo "install_tools.sh: '$*' did not report version $want: ${out:-no output}" >&2
    fail=1
  fi
}
check azurite 3.35.0 "$BIN/azurite-blob" --version
check bun 1.4.5 "$BIN/bun" --version
check deno 2.9.6 "$BIN/deno" --version
check axe-core 4.14.1 sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$TOOLS/node_modules/axe-core/package.json"
exit "$fail"
