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


def reset_synthetic_tracks(n_tracks: int, checksum_prefix: str) -> list[int]:
    """Empty the catalog, experiments and models of this bench database and COPY ``n_tracks`` synthetic tracks in;
    returns their ids in order."""
    import io

    from django.db import connection

    from recommender.models import Track

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE recommender_track, recommender_trackembedding CASCADE")
        cursor.execute("DELETE FROM experiments_variant")
        cursor.execute("DELETE FROM experiments_experiment")
        cursor.execute("DELETE FROM recommender_embeddingmodel")
        buffer = io.StringIO()
        for i in range(n_tracks):
            buffer.write(f"tune {i}\tcomposer {i % 997}\tcollection {i % 101}\t25\t16000\t1\t{checksum_prefix}{i:08d}\t"
                         "none\t{}\t{}\t\t2026-01-01T00:00:00Z\n")
        columns = ("title, artist, album, duration_s, sample_rate, channels, checksum, audio_path, metadata, labels, "
                   "document_text, created_at")
        with cursor.cursor.copy(f"COPY recommender_track ({columns}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
    return list(Track.objects.order_by("id").values_list("id", flat=True))
