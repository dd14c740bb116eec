#!/usr/bin/env bash
# Set up and run the whole test suite. Uses DATABASE_URL when set (CI: PostgreSQL), else SQLite.
# Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" requirements-dev.txt
bash scripts/install_tools.sh
if ! command -v chromium >/dev/null 2>&1 || ! command -v rclone >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium rclone) >/dev/null 2>&1 \
      || echo "warning: could not apt-get install chromium rclone" >&2
  fi
fi
python manage.py check
DEBUG=false SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
  ALLOWED_HOSTS=volumes.example.com python manage.py check --deploy --fail-level WARNING
python -m pytest "$@"
