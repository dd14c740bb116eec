# Sourced by run.sh and test.sh: a virtualenv with the pinned requirements, reinstalled when they change.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=".venv/.installed-$(cat requirements*.txt | sha1sum | cut -c1-12)-$(basename "$REQ")"
if [ ! -f "$STAMP" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r "$REQ"
  touch "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
