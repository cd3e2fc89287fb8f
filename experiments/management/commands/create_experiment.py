"""``manage.py create_experiment --name N --variant control=<model id|arm|name> --variant treatment=... [--start]``,
with an optional metric plan (``--primary-metric``, ``--secondary``, ``--guardrail METRIC:MARGIN``,
``--planned-users-per-arm``, ``--winsor-percentile``); left out, the default plan (experiments/plan.py)."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from experiments.plan import PlanError, experiment_plan_set
from experiments.services import (
    ExperimentError,
    VariantSpec,
    experiment_create,
    experiment_start,
    resolve_embedding_model,
)


class Command(BaseCommand):
    help = "Create an A/B experiment whose variants serve the given embedding models (the first is the control)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--variant", action="append", required=True, metavar="KEY=MODEL",
                            help="variant key = embedding model id, arm name (baseline/crossmusim) or model name")
        parser.add_argument("--weights", default="", help="comma-separated integer weights, e.g. 50,50")
        parser.add_argument("--traffic-fraction", type=float, default=1.0,
                            help="share of the placement's users (its free layer buckets) taken at start")
        parser.add_argument("--placement", default="track_page", help="placement key (default track_page)")
        parser.add_argument("--hypothesis", default="")
        parser.add_argument("--kind", default="ab", choices=["ab", "interleaving"],
                            help="ab (each user sees one variant) or interleaving (both rankers merged by team "
                                 "draft; exactly two variants)")
        parser.add_argument("--start", action="store_true", help="start it at once")
        parser.add_argument("--primary-metric", help="the success metric (default ctr)")
        parser.add_argument("--secondary", help="comma-separated secondary metrics (default stream_rate; '' for none)")
        parser.add_argument("--guardrail", action="append", metavar="METRIC:MARGIN",
                            help="a guardrail and its relative non-inferiority margin, e.g. skip_rate:0.05 (repeat; "
                                 "default skip_rate and seconds_per_click at 0.05)")
        parser.add_argument("--planned-users-per-arm", type=int,
                            help="fix the group-sequential maximum (default: none, the always-valid test decides)")
        parser.add_argument("--winsor-percentile", help="cap per-user numerators at this percentile (default 99.9; "
                                                        "'off': no capping)")

    def handle(self, *args, name, variant, weights, traffic_fraction, placement, hypothesis, start, kind="ab",
               **options):
        plan = _plan_fields(options)
        pairs = []
        for item in variant:
            key, sep, ref = item.partition("=")
            if not sep or not key.strip() or not ref.strip():
                raise CommandError(f"--variant expects KEY=MODEL, got {item!r}")
            pairs.append((key.strip(), ref.strip()))
        try:
            weight_list = [int(w) for w in weights.split(",")] if weights else [50] * len(pairs)
        except ValueError as error:
            raise CommandError(f"--weights must be comma-separated integers: {error}") from error
        if len(weight_list) != len(pairs):
            raise CommandError(f"{len(pairs)} variants but {len(weight_list)} weights")
        try:
            with transaction.atomic():
                specs = [
                    VariantSpec(key=key, embedding_model_id=resolve_embedding_model(ref).pk, weight=weight,
                                is_control=index == 0)
                    for index, ((key, ref), weight) in enumerate(zip(pairs, weight_list, strict=True))
                ]
                experiment = experiment_create(name=name, variants=specs, hypothesis=hypothesis, kind=kind,
                                               traffic_fraction=traffic_fraction, placement=placement)
                if plan:
                    experiment = experiment_plan_set(experiment=experiment, **plan)
                if start:
                    experiment = experiment_start(experiment=experiment)
        except (ExperimentError, PlanError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"experiment {experiment.pk} {experiment.name!r} on {experiment.placement_id} "
                          f"({experiment.status}, {experiment.traffic_fraction:.2%} of traffic): "
                          + ", ".join(f"{s.key}=model {s.embedding_model_id} w{s.weight}" for s in specs))


def _plan_fields(options: dict) -> dict:
    """The plan fields given on the command line (the others keep their defaults)."""
    plan = {}
    if options.get("primary_metric") is not None:
        plan["primary_metric"] = options["primary_metric"]
    if options.get("secondary") is not None:
        plan["secondary_metrics"] = [k.strip() for k in options["secondary"].split(",") if k.strip()]
    if options.get("guardrail"):
        rails = []
        for item in options["guardrail"]:
            key, sep, margin = item.partition(":")
            try:
                rails.append({"metric": key.strip(), "margin": float(margin) if sep else 0.05})
            except ValueError as error:
                raise CommandError(f"--guardrail expects METRIC:MARGIN, e.g. skip_rate:0.05, got {item!r}") from error
        plan["guardrails"] = rails
    if options.get("planned_users_per_arm") is not None:
        plan["planned_users_per_arm"] = options["planned_users_per_arm"]
    winsor = options.get("winsor_percentile")
    if winsor is not None:
        try:
            plan["winsor_percentile"] = None if winsor == "off" else float(winsor)
        except ValueError as error:
            raise CommandError(f"--winsor-percentile expects a number or 'off', got {winsor!r}") from error
    return plan
