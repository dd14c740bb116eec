"""Gunicorn settings for scripts/run.sh (override any with GUNICORN_CMD_ARGS, e.g. "--workers 8").

Threaded workers: file downloads, uploads and the agent endpoints stream for a long time, and a
thread per request keeps one slow client from holding a whole process."""
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("VOLUMES_WEB_THREADS", "4"))
timeout = 120  # a worker silent this long is restarted; transfers stream, so they are never silent that long
graceful_timeout = 10
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "warning").lower()
# The control socket's default path is shared by every gunicorn of the user: two installations would clash.
control_socket_disable = True


def child_exit(server, worker):
    """Prometheus multiprocess mode: a dead worker's live gauges must not count any more."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
