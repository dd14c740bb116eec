#!/usr/bin/env bash
# Set up and run Volumes on its embedded defaults: SQLite, filesystem storage, a filesystem
# Celery broker. No servers to install. Ctrl-C stops the web server and the worker.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" requirements.txt
bash scripts/install_tools.sh >/dev/null || echo "warning: could not install bun/deno; TypeScript jobs will fail" >&2

export DEBUG="${DEBUG:-true}"
PORT="${PORT:-8000}"
python manage.py migrate --noinput -v0
python manage.py bootstrap_demo
celery -A volumes_site worker -B --loglevel=WARNING --concurrency=2 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT
echo "Volumes is running at http://127.0.0.1:$PORT/ (Ctrl-C to stop)"
python manage.py runserver "127.0.0.1:$PORT" --noreload
