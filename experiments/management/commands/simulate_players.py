"""``manage.py simulate_players``: simulated listeners playing against the platform's public API."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from experiments.simulation import (
    ApiError,
    DropPolicy,
    PlatformClient,
    SimulationConfig,
    add_api_key_arguments,
    resolve_api_key,
    run_simulation,
)
from experiments.simulation.runner import DROP_AFTER_FIRST_REQUEST, DROP_BEFORE_FIRST_REQUEST, load_catalog


def arm_oracle(experiment_id: int | None):
    """``user_id -> variant key`` for the running experiment, from the serving configuration (harness knowledge).

    Only the ``before_first_request`` drop needs it: a player cannot learn its arm without a
    request, and every request is logged, so losing users *before* the platform sees them (the
    SRM a broken redirect causes) needs the assignment computed on this side. Users outside the
    experiment (another experiment's or the default's) map to ``None``.
    """
    from experiments.models import Experiment
    from experiments.selectors import clear_serving_cache, serving_config

    experiments = Experiment.objects.filter(status=Experiment.Status.RUNNING)
    if experiment_id is not None:
        experiments = Experiment.objects.filter(pk=experiment_id)
    experiment = experiments.order_by("-started_at", "-pk").first()
    if experiment is None:
        raise CommandError("no running experiment to drop users from (pass --experiment ID)")
    clear_serving_cache()
    layer = serving_config().placements[experiment.placement_id]

    def arm_of(user_id: str) -> str | None:
        assigned = layer.assign(user_id)
        return assigned.variant.key if assigned.experiment and assigned.experiment.experiment_id == experiment.pk \
            else None

    return arm_of


def parse_placements(text: str) -> tuple[tuple[str, float], ...]:
    """``track_page=3,autoplay=1`` -> ((track_page, 3.0), (autoplay, 1.0)); a name alone weighs 1."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition("=")
        try:
            pairs.append((name.strip(), float(weight) if weight else 1.0))
        except ValueError as error:
            raise ValueError(f"--placements expects NAME=WEIGHT items, got {item!r}") from error
    return tuple(pairs)


class Command(BaseCommand):
    help = (
        "Simulate music players: users with a latent taste over the catalog's labels ask "
        "GET /api/v1/recommendations from seed tracks and POST their clicks and plays to /api/v1/events, "
        "paced to --rate requests/s for at most --duration seconds."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=1000, help="Simulated users (default 1000)")
        parser.add_argument("--rate", type=float, default=50.0, help="Recommendation requests per second (default 50)")
        parser.add_argument("--duration", type=float, default=60.0, help="Upper bound on the run in seconds")
        parser.add_argument("--max-requests", type=int, default=None, help="Upper bound on recommendation requests")
        add_api_key_arguments(parser, "File holding the player API key, e.g. var/player_api_key (default: the "
                                      "PLAYER_API_KEY setting, else the file PLAYER_API_KEY_FILE names; both from "
                                      "the environment)")
        parser.add_argument("--base-url", default=settings.PLAYER_BASE_URL,
                            help=f"Platform URL (default: the PLAYER_BASE_URL setting, {settings.PLAYER_BASE_URL})")
        parser.add_argument("--seed", type=int, default=0, help="Seed of users, tastes, sessions and clicks")
        parser.add_argument("--k", type=int, default=10, help="Recommendations per request")
        parser.add_argument("--workers", type=int, default=16, help="Concurrent player threads / connections")
        parser.add_argument("--placements", default="",
                            help="Spread sessions over placements by weight, e.g. track_page=3,autoplay=1 "
                                 "(default: every request on the default placement)")
        parser.add_argument("--user-prefix", default="sim", help="Prefix of the user ids (sim-<seed>-<n>)")
        parser.add_argument("--drop-arm", default=None, help="SRM proof: variant key whose users vanish")
        parser.add_argument("--drop-fraction", type=float, default=0.0, help="Share of --drop-arm users who vanish")
        parser.add_argument("--drop-when", default=DROP_AFTER_FIRST_REQUEST,
                            choices=[DROP_AFTER_FIRST_REQUEST, DROP_BEFORE_FIRST_REQUEST],
                            help="Vanish after the first (logged) request, or before the platform ever sees them")
        parser.add_argument("--experiment", type=int, default=None,
                            help="Experiment id for --drop-when before_first_request (default: the running one)")
        parser.add_argument("--summary-json", type=Path, default=None, help="Also write the summary as JSON here")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar")

    def handle(self, *args, **options):
        try:
            api_key = resolve_api_key(options["api_key"], options["api_key_file"], default_key=settings.PLAYER_API_KEY,
                                      default_key_file=settings.PLAYER_API_KEY_FILE or None)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not api_key:
            raise CommandError("an API key is needed: --api-key-file PATH, PLAYER_API_KEY or PLAYER_API_KEY_FILE "
                               "(manage.py create_api_key NAME)")
        try:
            drop = DropPolicy(
                arm=options["drop_arm"],
                fraction=options["drop_fraction"],
                when=options["drop_when"],
                arm_of=(arm_oracle(options["experiment"])
                        if options["drop_arm"] and options["drop_when"] == DROP_BEFORE_FIRST_REQUEST else None),
            )
            config = SimulationConfig(
                users=options["users"], rate=options["rate"], duration_s=options["duration"],
                max_requests=options["max_requests"], seed=options["seed"], k=options["k"],
                workers=options["workers"], user_prefix=options["user_prefix"], drop=drop,
                placements=parse_placements(options["placements"]),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

        with PlatformClient(options["base_url"], api_key, max_connections=config.workers + 2) as client:
            try:
                catalog, _ = load_catalog(client)
            except ApiError as exc:
                raise CommandError(f"cannot read the catalog from {options['base_url']}: {exc}") from exc
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self.stderr.write(
                f"catalog: {len(catalog.tracks)} tracks, {len(catalog.styles)} styles, "
                f"{len(catalog.ensembles)} ensembles; {config.users} users at {config.rate:g} req/s "
                f"for at most {config.duration_s:g} s"
            )
            expected = int(config.rate * config.duration_s)
            if config.max_requests:
                expected = min(expected, config.max_requests)
            bar = tqdm(total=expected, unit="req", desc="players", disable=options["no_progress"], smoothing=0.1)
            lock = threading.Lock()
            last_postfix = [0.0]

            def on_request(summary) -> None:
                with lock:
                    bar.update(1)
                    now = time.monotonic()
                    if now - last_postfix[0] > 0.5:
                        last_postfix[0] = now
                        errors = summary.request_errors + summary.event_post_errors
                        bar.set_postfix(clicks=summary.clicks, errors=errors, users=summary.users_active, refresh=False)

            try:
                summary = run_simulation(config, client, catalog=catalog, on_request=on_request)
            finally:
                bar.close()

        self.stdout.write(summary.format())
        if options["summary_json"]:
            options["summary_json"].parent.mkdir(parents=True, exist_ok=True)
            options["summary_json"].write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
