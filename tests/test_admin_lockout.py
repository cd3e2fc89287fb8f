"""Admin login lockout (django-axes): repeated wrong passwords lock that username from that address.

A tester tried 10 wrong passwords in 2.7 s; now the fifth failure locks the pair for
AXES_COOLOFF_TIME, and even the right password is refused meanwhile.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db.models import F

LOGIN = "/admin/login/"
PASSWORD = "right-password-1"

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("boss", password=PASSWORD, is_staff=True, is_superuser=True)


def login(client, password: str, addr: str = "10.2.0.1"):
    return client.post(LOGIN, {"username": "boss", "password": password, "next": "/admin/"}, REMOTE_ADDR=addr)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_wrong_passwords_lock_the_username_from_that_address(client, staff):
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5
    # one failure short of the limit, the right password still works (and resets the count)
    for _ in range(limit - 1):
        assert login(client, "wrong").status_code == 200  # the form again, with its error
    assert login(client, PASSWORD).status_code == 302 and logged_in(client)
    client.logout()

    for _ in range(limit):
        login(client, "wrong")
    locked = login(client, PASSWORD)
    assert locked.status_code == 429 and not logged_in(client)
    assert "locked" in locked.content.decode().lower()
    assert client.get("/admin/").status_code == 302  # still sent to the login page

    # the lockout is per username and address: the same user elsewhere, or another user here, is not locked
    assert login(client, PASSWORD, addr="10.2.0.2").status_code == 302 and logged_in(client)


def test_the_lockout_ends_after_the_cooloff_time(client, staff):
    """Locked now; once the failures are older than AXES_COOLOFF_TIME (15 min), the right password works."""
    from axes.models import AccessAttempt

    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "wrong")
    assert login(client, PASSWORD).status_code == 429
    cooloff = settings.AXES_COOLOFF_TIME
    assert cooloff.total_seconds() >= 60  # long enough to make guessing pointless
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - cooloff / 2)
    assert login(client, PASSWORD).status_code == 429  # half-way: still locked
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - cooloff)
    assert login(client, PASSWORD).status_code == 302 and logged_in(client)
