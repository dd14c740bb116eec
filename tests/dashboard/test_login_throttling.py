"""Login throttling (django-axes): per account and per address, a clear message and a cool-down, on
the dashboard login and the admin login alike; Django's standard password validators are on."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple 7"


@pytest.fixture
def owner(cast):
    user = cast["owner"]
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def staff(cast):
    user = cast["admin"]
    user.set_password(PASSWORD)
    user.is_staff = user.is_superuser = True
    user.save()
    return user


def login(url, username, password, ip="10.0.0.1"):
    return Client(REMOTE_ADDR=ip).post(url, {"username": username, "password": password})


def fail(url, username, times, ip="10.0.0.1"):
    for _ in range(times):
        response = login(url, username, "wrong password", ip)
        assert response.status_code in (200, 429)


def test_wrong_passwords_lock_the_account_with_a_clear_message_then_it_cools_down(owner, settings):
    limit = settings.AXES_FAILURE_LIMIT
    fail("/login/", "owner", limit - 1)
    assert login("/login/", "owner", PASSWORD).status_code == 302  # under the limit: in (and the count resets)
    fail("/login/", "owner", limit)
    locked = login("/login/", "owner", PASSWORD)
    assert locked.status_code == 429
    text = locked.content.decode()
    assert "Too many failed logins" in text and "minutes" in text
    # The account, not only the address: another address is refused too.
    assert login("/login/", "owner", PASSWORD, ip="10.9.9.9").status_code == 429
    # After the cool-down it works again.
    from axes.models import AccessAttempt

    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert login("/login/", "owner", PASSWORD).status_code == 302


def test_one_address_guessing_many_accounts_is_locked_out(owner, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        login("/login/", f"guess-{i}", "wrong password", ip="10.0.0.66")
    assert login("/login/", "owner", PASSWORD, ip="10.0.0.66").status_code == 429
    assert login("/login/", "owner", PASSWORD, ip="10.0.0.67").status_code == 302


def test_the_admin_login_is_throttled_the_same_way(staff, settings):
    fail("/admin/login/", "admin", settings.AXES_FAILURE_LIMIT)
    locked = login("/admin/login/", "admin", PASSWORD)
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    assert login("/login/", "admin", PASSWORD).status_code == 429  # one account, whichever form


def test_djangos_standard_password_validators_are_on(owner):
    for weak in ["password", "12345678901", "owner123", "short"]:
        with pytest.raises(ValidationError):
            validate_password(weak, user=owner)
    validate_password(PASSWORD, user=owner)
    assert get_user_model().objects.get(pk=owner.pk).check_password(PASSWORD)
