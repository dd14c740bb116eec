import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "volumes_site.settings")

app = Celery("volumes_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def queue_names() -> list[str]:
    """Every queue a worker of this installation must consume: the default one plus each queue named in
    CELERY_TASK_ROUTES (scripts/run.sh starts its worker with all of them)."""
    conf = app.conf
    names = [conf.task_default_queue or "celery"]
    routes = conf.task_routes or {}
    for table in routes if isinstance(routes, (list, tuple)) else [routes]:
        if not isinstance(table, dict):
            continue  # a router function: its queues cannot be listed; name them in CELERY_WORKER_QUEUES
        for route in table.values():
            queue = route.get("queue") if isinstance(route, dict) else route
            queue = getattr(queue, "name", queue)  # a kombu Queue or its name
            if isinstance(queue, str) and queue not in names:
                names.append(queue)
    return names
