"""Settings for the test suite: the normal settings, minus HTTPS redirects, plus fast hashing and a random key.

Worker processes started by tests use this module too, with DATABASE_URL pointing at the test database.
"""
import os
import secrets

os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
# A fresh key per test run, in the environment so the worker processes tests start share it.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
# The test storage servers (moto, Azurite, the GCS emulator) listen on 127.0.0.1, which storage
# endpoints may only use when the operator allows it; tests/storage/test_policy.py proves the refusal.
os.environ.setdefault("VOLUMES_STORAGE_ALLOWED_HOSTS", "127.0.0.1")
# GC deletes garbage at once in tests; tests of the grace period set it themselves.
os.environ.setdefault("VOLUMES_GC_GRACE", "0")
os.environ.setdefault("VOLUMES_DATA_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))

from .settings import *  # noqa: E402,F401,F403
from .settings import DATABASES, VOLUMES_DATA_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so worker processes started by tests see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VOLUMES_DATA_DIR / "test.sqlite3")}
