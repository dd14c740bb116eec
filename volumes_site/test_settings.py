"""Settings for the test suite: the normal settings, minus HTTPS redirects, plus fast hashing.

Worker processes started by tests use this module too, with DATABASE_URL pointing at the test database.
"""
import os

os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("VOLUMES_DATA_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))

from .settings import *  # noqa: E402,F401,F403
from .settings import DATABASES, VOLUMES_DATA_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so worker processes started by tests see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VOLUMES_DATA_DIR / "test.sqlite3")}
