"""``manage.py demo_info``: where to look once ``make run`` is up."""

from django.conf import settings
from django.core.management.base import BaseCommand

from abplatform.management.commands.prepare_demo import ADMIN_USERNAME, EXPERIMENT_NAME, admin_password_file
from experiments.analysis import experiment_results
from experiments.models import Experiment
from experiments.stats.results import ExperimentResults


class Command(BaseCommand):
    help = "Print the dashboard URL and the admin login of the demo."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, base_url: str, **options):
        password_file = admin_password_file()
        password = settings.ADMIN_PASSWORD or (
            password_file.read_text().strip() if password_file.exists() else "(see ADMIN_PASSWORD)")
        experiment = Experiment.objects.filter(name=EXPERIMENT_NAME).first()
        self.stdout.write(self.style.SUCCESS("\nCrossMuSim platform is running"))
        if experiment is not None:
            self.stdout.write(f"  dashboard:   {base_url}/experiments/{experiment.pk}/")
            self._metrics(experiment)
        self.stdout.write(f"  experiments: {base_url}/experiments/")
        self.stdout.write(f"  admin:       {base_url}/admin/   login {ADMIN_USERNAME} / {password}")
        self.stdout.write(f"  API docs:    {base_url}/api/docs/")
        self.stdout.write(f"  health:      {base_url}/healthz")

    def _metrics(self, experiment: Experiment) -> None:
        """The demo experiment's metric plan as the dashboard reads it: each metric per arm, CUPED lift, decision."""
        try:
            results = experiment_results(experiment)
        except ValueError as error:
            self.stdout.write(f"  (no analysis yet: {error})")
            return
        if not isinstance(results, ExperimentResults):  # an interleaving experiment has no metric plan
            return
        for m in results.metrics or []:
            values = ", ".join(f"{key} {value:.4g}" for key, value in m.values.items() if value is not None)
            lifts = ", ".join(f"{c.key} CUPED {c.cuped.effect:+.1%}" for c in results.metric_comparisons
                              if c.metric == m.key and c.cuped.effect is not None)
            self.stdout.write(f"  {m.role:9s}  {m.label}: {values}{'; ' + lifts if lifts else ''}")
        for d in results.decisions or []:
            self.stdout.write(f"  decision:  {d.text}")
