"""Settings from the environment (12-factor). Embedded defaults need no servers:
SQLite under var/, a filesystem Celery broker, filesystem volume storage."""
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

VOLUMES_DATA_DIR = Path(env.str("VOLUMES_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()


def _secret_key() -> str:
    """SECRET_KEY from the environment; there is no built-in key (it would be public, in this file).

    Without one: with DEBUG on, a key generated on first start and kept in <data dir>/secret_key
    (scripts/run.sh does the same for any DEBUG); an agent worker signs nothing, so it uses a
    throwaway key; any other process with DEBUG off refuses to start."""
    key = env.str("SECRET_KEY", default="")
    if key:
        return key
    if DEBUG:
        path = VOLUMES_DATA_DIR / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, secrets.token_urlsafe(50).encode())
                os.close(fd)
            except FileExistsError:  # another process of this start made it first
                pass
        return path.read_text().strip()
    if sys.argv[1:2] == ["agent_worker"]:
        return secrets.token_urlsafe(50)
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. With DEBUG off Volumes never runs with a known key: set the environment "
        "variable SECRET_KEY to a long random value, the same on every web server and Celery worker, e.g. "
        "SECRET_KEY=\"$(python -c 'import secrets; print(secrets.token_urlsafe(50))')\" "
        "(scripts/run.sh generates one on first start and keeps it in <VOLUMES_DATA_DIR>/secret_key)."
    )


SECRET_KEY = _secret_key()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_htmx",
    "volumes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "volumes.middleware.ContentSecurityPolicyMiddleware",  # early: it sees every answer on its way out
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "volumes.middleware.RequestGuardMiddleware",  # before any view or CSRF check parses the body
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the clear answer below
]

ROOT_URLCONF = "volumes_site.urls"
WSGI_APPLICATION = "volumes_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VOLUMES_DATA_DIR / 'volumes.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several worker processes share the file: wait for the write lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out logins before any password check
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Login throttling (django-axes), for the dashboard and the admin login alike: after
# VOLUMES_LOGIN_FAILURE_LIMIT failed logins of one account, or from one address, logging in is refused
# (429, with a message) for VOLUMES_LOGIN_COOLOFF_MINUTES. The address is REMOTE_ADDR: behind a proxy,
# set AXES_IPWARE_PROXY_COUNT (needs django-ipware) or a proxy that sets REMOTE_ADDR.
AXES_FAILURE_LIMIT = env.int("VOLUMES_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("VOLUMES_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "volumes.dashboard.views.common.login_locked_out"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VOLUMES_DATA_DIR / "staticfiles"  # filled by collectstatic in production
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request if it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str(
            "STATICFILES_BACKEND", default="django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "volumes.api.auth.ApiTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "volumes.api.schema.VolumesAutoSchema",
    "EXCEPTION_HANDLER": "volumes.api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "volumes.api.parsers.SafeJSONParser",  # deep nesting is a 400, not a RecursionError
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": None,
    # No OPTIONS metadata: it would describe a view before the workspace check (405 instead).
    "DEFAULT_METADATA_CLASS": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Volumes API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from our own static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"StorageKindEnum": ["filesystem", "s3", "azure", "gcs"]},
    # The API is JSON (forms are still parsed, for browsers, but not promised in the schema).
    "PARSER_WHITELIST": ["volumes.api.parsers.SafeJSONParser", "volumes.api.http.RawBodyParser"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "volumes.api.schema.require_json_bodies"],
    # Readable tags (volumes/api/schema.py), in this order in the docs: the public API first, agents last.
    "TAGS": [
        {"name": "workspaces", "description": "The workspaces you belong to, and where to start"},
        {"name": "volumes", "description": "Create, list and delete volumes"},
        {"name": "files", "description": "Browse, download, upload, move and delete a volume's files"},
        {"name": "shares", "description": "Who may use a volume (owner and admins)"},
        {"name": "history", "description": "A volume's generations: list, restore, prune"},
        {"name": "jobs", "description": "Submit scripts, follow their status and logs, cancel them"},
        {"name": "storages", "description": "The workspace's object storages (admins)"},
        {"name": "agent", "description": "Engine endpoints for agent workers (claim, leases, blobs, commits)"},
    ],
}

# Celery: Redis (or any broker URL) in production; an embedded filesystem broker by default.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VOLUMES_DATA_DIR / "broker"
    for _sub in ("queue", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
    CELERY_RESULT_BACKEND = env.str(
        "CELERY_RESULT_BACKEND", default=f"db+sqlite:///{VOLUMES_DATA_DIR / 'celery-results.sqlite3'}"
    )
else:
    CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The reaper and GC have their own queue: a backlog of jobs on the default queue never delays them.
# Workers consume both (`celery -A volumes_site worker -Q celery,maintenance`).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "volumes.tasks.reap_lost_jobs": {"queue": "maintenance"},
    "volumes.tasks.collect_garbage": {"queue": "maintenance"},
}
# Beat keeps its schedule file under the data folder, not in the working directory.
CELERY_BEAT_SCHEDULE_FILENAME = str(VOLUMES_DATA_DIR / "celerybeat-schedule")

VOLUMES = {
    "DATA_DIR": VOLUMES_DATA_DIR,
    "CACHE_DIR": Path(env.str("VOLUMES_CACHE_DIR", default=str(VOLUMES_DATA_DIR / "cache"))).resolve(),
    "LEASE_TTL": env.float("VOLUMES_LEASE_TTL", default=60.0),
    "LEASE_RENEW_INTERVAL": env.float("VOLUMES_LEASE_RENEW_INTERVAL", default=10.0),
    "LEASE_WAIT_MAX": env.float("VOLUMES_LEASE_WAIT_MAX", default=600.0),
    "EDITION": env.str("VOLUMES_EDITION", default="community"),
    "MAX_VOLUMES_PER_WORKSPACE": env.int("VOLUMES_MAX_VOLUMES_PER_WORKSPACE", default=None),
    "MAX_FILE_SIZE": env.int("VOLUMES_MAX_FILE_SIZE", default=None),
    "CACHE_MAX_BYTES": env.int("VOLUMES_CACHE_MAX_BYTES", default=10 * 1024**3),
    "CACHE_LOCK_WAIT": env.float("VOLUMES_CACHE_LOCK_WAIT", default=30.0),
    "TRANSFER_THREADS": env.int("VOLUMES_TRANSFER_THREADS", default=8),
    "MANIFEST_MEMORY_ENTRIES": env.int("VOLUMES_MANIFEST_MEMORY_ENTRIES", default=250_000),
    "HISTORY_KEEP_GENERATIONS": env.int("VOLUMES_HISTORY_KEEP_GENERATIONS", default=50),
    "HISTORY_KEEP_DAYS": env.int("VOLUMES_HISTORY_KEEP_DAYS", default=30),
    "GC_GRACE": env.float("VOLUMES_GC_GRACE", default=3600.0),
    "TRASH_DAYS": env.float("VOLUMES_TRASH_DAYS", default=7.0),
    "WORKER_NAME": env.str("VOLUMES_WORKER_NAME", default=""),
    # The sandbox's network: "none" (own namespace, loopback only) or "internet" (egress without the worker's
    # loopback, link-local and private addresses, except the networks listed); see volumes/runner/network.py.
    "SANDBOX_NETWORK": env.str("VOLUMES_SANDBOX_NETWORK", default="none"),
    "SANDBOX_ALLOW_NETWORKS": env.list("VOLUMES_SANDBOX_ALLOW_NETWORKS", default=[]),
    "JOB_TIMEOUT": env.float("VOLUMES_JOB_TIMEOUT", default=3600.0),
    "JOB_LOG_MAX_BYTES": env.int("VOLUMES_JOB_LOG_MAX_BYTES", default=1024 * 1024),
    "ANONYMOUS_BODY_MAX_BYTES": env.int("VOLUMES_ANONYMOUS_BODY_MAX_BYTES", default=64 * 1024),
    # Names of the worker's environment variables a job may see (nothing else of it reaches a job).
    "JOB_ENV_ALLOW": env.list("VOLUMES_JOB_ENV_ALLOW", default=[]),
    # Run every job under nsjail, annotated or not; a job fails (never runs unsandboxed) where nsjail cannot run.
    "SANDBOX_ALL": env.bool("VOLUMES_SANDBOX_ALL", default=False),
    # uids for unsandboxed jobs on a root worker, one per running job (see volumes/runner/identity.py).
    "JOB_UIDS": env.str("VOLUMES_JOB_UIDS", default="1900000000-1900000999"),
    "STORAGE_BASE_DIR": Path(env.str("VOLUMES_STORAGE_BASE_DIR", default=str(VOLUMES_DATA_DIR / "storage"))).resolve(),
    "STORAGE_ALLOWED_HOSTS": env.list("VOLUMES_STORAGE_ALLOWED_HOSTS", default=[]),
    "STORAGE_RETRY_FOR": env.float("VOLUMES_STORAGE_RETRY_FOR", default=60.0),
    "PRESIGN_SECONDS": env.float("VOLUMES_PRESIGN_SECONDS", default=300.0),
    "AGENT_PROXY_STORAGES": env.list("VOLUMES_AGENT_PROXY_STORAGES", default=[]),
    # Who sees /metrics and /healthz details besides staff: this bearer token, and these networks.
    "MONITORING_TOKEN": env.str("VOLUMES_MONITORING_TOKEN", default=""),
    "MONITORING_ALLOW_NETWORKS": env.list("VOLUMES_MONITORING_ALLOW_NETWORKS", default=[]),
}

# After VOLUMES: the reaper runs every sixth of a lease TTL, so a lost job fails within one TTL of
# its last heartbeat (services.jobs.reap_grace).
CELERY_BEAT_SCHEDULE = {
    "reap-lost-jobs": {"task": "volumes.tasks.reap_lost_jobs", "schedule": VOLUMES["LEASE_TTL"] / 6},
    "collect-garbage": {"task": "volumes.tasks.collect_garbage", "schedule": env.float("VOLUMES_GC_INTERVAL", default=3600.0)},
}

# Security: strict by default when DEBUG is off (manage.py check --deploy is clean).
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Load balancers and Prometheus often probe over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}
