#!/usr/bin/env bash
# Set up and run the whole test suite. Uses DATABASE_URL when set (CI: PostgreSQL), else SQLite.
# Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" requirements-dev.txt
bash scripts/install_tools.sh
# pasta (passt) and nft (nftables): the sandbox's filtered internet egress (VOLUMES_SANDBOX_NETWORK=internet).
if ! command -v chromium >/dev/null 2>&1 || ! command -v rclone >/dev/null 2>&1 \
    || ! command -v pasta >/dev/null 2>&1 || ! command -v nft >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium rclone passt nftables) >/dev/null 2>&1 \
      || echo "warning: could not apt-get install chromium rclone passt nftables" >&2
  fi
fi
# Production processes refuse to start without SECRET_KEY: the checks get a throwaway one.
KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
SECRET_KEY="$KEY" python manage.py check
DEBUG=false SECRET_KEY="$KEY" \
  ALLOWED_HOSTS=volumes.example.com python manage.py check --deploy --fail-level WARNING
python -m pytest "$@"
