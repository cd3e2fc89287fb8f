from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_default_placement(sender=None, using="default", **_kwargs) -> None:
    """The default placement always exists: migration 0013_placements creates it, and this brings it back after a flush
    (``manage.py flush``, the test runner between transactional tests), as Django does for content types."""
    from django.db import connections

    from experiments.models import DEFAULT_PLACEMENT, Placement

    if Placement._meta.db_table not in connections[using].introspection.table_names():
        return  # migrated to a state before placements
    Placement.objects.using(using).get_or_create(key=DEFAULT_PLACEMENT, defaults={"name": "Track page"})


class ExperimentsConfig(AppConfig):
    name = "experiments"
    verbose_name = "A/B experiments"

    def ready(self) -> None:
        """Name each model's experiment placements on the listening room's cards (recommender cannot ask us)."""
        from experiments.selectors import model_placements
        from recommender.services.listening import register_placement_source

        register_placement_source(model_placements)
        post_migrate.connect(ensure_default_placement, sender=self)
