"""Each bench runs on a database of its own on the embedded server (never the platform's or a test's)."""

from __future__ import annotations

from abplatform import embedded


def setup_django_on(db_name: str) -> None:
    """Create ``db_name`` if missing, set Django up on it (DJANGO_DB_NAME must already name it) and migrate.

    The settings load first: they tell ``embedded`` which var dir (ABPLATFORM_VAR_DIR) holds the server.
    """
    from django.conf import settings

    settings.VAR_DIR  # noqa: B018 - loads the settings, which call embedded.use_var_dir
    embedded.ensure_database(db_name)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
