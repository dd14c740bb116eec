#!/usr/bin/env bash
# Set up and run Volumes on its embedded defaults: SQLite, filesystem storage, a filesystem Celery broker.
# No servers to install.
#
#   ./scripts/run.sh         production-shaped: gunicorn, DEBUG off, collected static files served by
#                            WhiteNoise, a Celery worker (every queue of CELERY_TASK_ROUTES) and Celery beat
#   ./scripts/run.sh --dev   development: Django's runserver with autoreload and DEBUG on, same worker and beat
#
# Ctrl-C (or SIGTERM) stops every process it started; one that has not stopped after VOLUMES_STOP_TIMEOUT
# seconds (default 15) is killed with its children. If any of them exits, the others are stopped too.
set -euo pipefail
MODE=prod
case "${1:-}" in
  "") ;;
  --dev) MODE=dev ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown option $1 (use --dev for the development server)" >&2; exit 2 ;;
esac
source "$(dirname "$0")/_venv.sh" requirements.txt
bash scripts/install_tools.sh >/dev/null || echo "warning: could not install bun/deno; TypeScript jobs will fail" >&2

export VOLUMES_DATA_DIR="${VOLUMES_DATA_DIR:-$ROOT/var}"
mkdir -p "$VOLUMES_DATA_DIR"
VOLUMES_DATA_DIR="$(cd "$VOLUMES_DATA_DIR" && pwd)"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
if [ "$MODE" = dev ]; then
  export DEBUG=true
else
  export DEBUG=false
  # Served over plain HTTP on this machine: no redirect to https, cookies without the Secure flag, no HSTS.
  # Behind a TLS proxy set these to true (and SECURE_HSTS_SECONDS), see docs/scaling.md.
  export SECURE_SSL_REDIRECT="${SECURE_SSL_REDIRECT:-false}"
  export SESSION_COOKIE_SECURE="${SESSION_COOKIE_SECURE:-false}"
  export CSRF_COOKIE_SECURE="${CSRF_COOKIE_SECURE:-false}"
  export SECURE_HSTS_SECONDS="${SECURE_HSTS_SECONDS:-0}"
  export STATICFILES_BACKEND="${STATICFILES_BACKEND:-django.contrib.staticfiles.storage.ManifestStaticFilesStorage}"
fi
# No built-in secret key: generate one on first start and keep it under the data folder (mode 0600).
if [ -z "${SECRET_KEY:-}" ]; then
  KEY_FILE="$VOLUMES_DATA_DIR/secret_key"
  if [ ! -s "$KEY_FILE" ]; then
    (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(50))' > "$KEY_FILE")
    echo "generated a secret key in $KEY_FILE (keep it; set SECRET_KEY to use your own)" >&2
  fi
  SECRET_KEY="$(cat "$KEY_FILE")"
  export SECRET_KEY
fi
# Prometheus multiprocess mode: every web and Celery process writes its metrics here and /metrics adds
# them up. Emptied at each start (the files of processes of an earlier run would count forever).
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$VOLUMES_DATA_DIR/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

python manage.py migrate --noinput -v0
python manage.py bootstrap_demo
if [ "$MODE" = prod ]; then
  python manage.py collectstatic --noinput -v0
fi
QUEUES="${CELERY_WORKER_QUEUES:-$(python -c 'from volumes_site.celery import queue_names; print(",".join(queue_names()))')}"

# Each process runs in its own process group (job control), so stopping one stops its children too,
# and a Ctrl-C reaches only this script, which stops them in order.
set -m
PIDS=()
NAMES=()
start() {  # start NAME COMMAND...
  NAMES+=("$1"); shift
  "$@" &
  PIDS+=($!)
}
STOPPING=0
stop_all() {
  [ "$STOPPING" = 1 ] && return
  STOPPING=1
  trap '' INT TERM HUP
  local pid waited=0 limit="${VOLUMES_STOP_TIMEOUT:-15}"
  # TERM to each leader only: Celery and gunicorn stop their own children (a TERM to a Celery pool child
  # made the worker start a new one and then hang in its shutdown). What a leader leaves behind (runserver's
  # autoreloaded child) gets a TERM of its own; the whole group is killed after the limit.
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  while [ "$waited" -lt $((limit * 10)) ]; do
    local alive=0
    for pid in "${PIDS[@]}"; do
      if kill -0 -- "-$pid" 2>/dev/null; then
        alive=1
        kill -0 "$pid" 2>/dev/null || kill -TERM -- "-$pid" 2>/dev/null || true
      fi
    done
    [ "$alive" = 0 ] && break
    sleep 0.1; waited=$((waited + 1))
  done
  for pid in "${PIDS[@]}"; do
    if kill -0 -- "-$pid" 2>/dev/null; then
      echo "run.sh: process group $pid did not stop in ${limit}s; killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM HUP
trap 'stop_all' EXIT

start "celery worker" celery -A volumes_site worker -Q "$QUEUES" --loglevel=WARNING \
  --concurrency="${VOLUMES_WORKER_CONCURRENCY:-2}"
# One more process only for the maintenance queue (reaper, GC): long jobs on every slot above never delay them.
start "maintenance worker" celery -A volumes_site worker -Q maintenance -n maintenance@%h --loglevel=WARNING \
  --concurrency=1
start "celery beat" celery -A volumes_site beat --loglevel=WARNING \
  --schedule="$VOLUMES_DATA_DIR/celerybeat-schedule"
if [ "$MODE" = dev ]; then
  start "runserver" python manage.py runserver "$HOST:$PORT"
else
  export HOST PORT  # volumes_site/gunicorn_conf.py binds to them
  start "gunicorn" gunicorn volumes_site.wsgi:application -c python:volumes_site.gunicorn_conf
fi

# Ready when /healthz answers 200 (database, broker and storages reachable).
if python - "$HOST" "$PORT" "${PIDS[-1]}" <<'EOF'
import os, sys, time, urllib.request, urllib.error
host, port, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(2)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as response:
            if response.status == 200:
                sys.exit(0)
    except (OSError, urllib.error.URLError):
        pass
    time.sleep(0.3)
sys.exit(1)
EOF
then
  echo "Volumes is running at http://$HOST:$PORT/ ($([ "$MODE" = dev ] && echo "development server" || echo gunicorn); Ctrl-C to stop)"
else
  echo "run.sh: the web server did not become healthy at http://$HOST:$PORT/healthz; stopping" >&2
  exit 1
fi
set +e
wait -n
status=$?
set -e
for i in "${!PIDS[@]}"; do
  if ! kill -0 -- "${PIDS[$i]}" 2>/dev/null; then
    echo "run.sh: ${NAMES[$i]} stopped (exit $status); stopping the others" >&2
    break
  fi
done
exit "$status"
