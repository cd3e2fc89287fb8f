from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "experiments"
    verbose_name = "A/B experiments"

    def ready(self) -> None:
        """Name each model's experiment placements on the listening room's cards (recommender cannot ask us)."""
        from experiments.selectors import model_placements
        from recommender.services.listening import register_placement_source

        register_placement_source(model_placements)
