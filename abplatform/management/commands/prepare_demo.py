"""``manage.py prepare_demo``: the offline half of ``make run``, resumable step by step.

Catalog -> descriptions -> backbone features -> baseline and CrossMuSim models -> pgvector
indexes -> admin login, player API key and the running experiment. Each step looks at
what already exists and does only what is missing, so a second ``make run`` resumes.
Settings: DEMO_SIZE (default of ``--size``), LLM_BASE_URL (adds the llm source inline; unset, the
shipped local model's descriptions come from a background Celery job, ``recommender.llm_text_run``),
DEMO_LLM_PERSPECTIVES, ADMIN_PASSWORD (else one generated into VAR_DIR/admin_password).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from abplatform.apikeys.models import ApiKey
from abplatform.apikeys.services import api_key_create, hash_api_key
from experiments.models import Experiment
from recommender.models import Description, EmbeddingModel, Track
from recommender.selectors import llm_text_model_exists
from recommender.services.descriptions import llm_configured

EXPERIMENT_NAME = "cross-modal vs baseline"
ADMIN_USERNAME = "admin"


def admin_password_file() -> Path:
    """Where the generated admin password is kept (a function: VAR_DIR is a setting, read when the command runs)."""
    return Path(settings.VAR_DIR) / "admin_password"


def player_key_file() -> Path:
    """Where the demo's player API key is kept for `make run`'s simulators (``--api-key-file var/player_api_key``)."""
    return Path(settings.VAR_DIR) / "player_api_key"


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


class Command(BaseCommand):
    help = "Build the demo catalog, descriptions, both arms and the experiment; resumes from what exists."

    def add_arguments(self, parser):
        parser.add_argument("--size", type=int, default=settings.DEMO_SIZE)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--steps", type=int, default=None, help="CrossMuSim training steps (core default)")

    def _step(self, title: str) -> float:
        self.stdout.write(self.style.MIGRATE_HEADING(f"\n==> {title}"))
        return time.monotonic()

    def _done(self, started: float, what: str = "done") -> None:
        self.stdout.write(f"    {what} ({time.monotonic() - started:.1f} s)")

    def handle(self, *args, size: int, seed: int, steps: int | None, **options):
        started = self._step(f"demo catalog ({size} tracks)")
        if Track.objects.count() >= size:
            self._done(started, f"{Track.objects.count()} tracks already in the catalog")
        else:
            call_command("build_demo_catalog", size=size, seed=seed)
            self._done(started)

        # An LLM endpoint (LLM_BASE_URL) answers fast enough to wait for; the shipped local model does not
        # (~1 track/s on a free core): its descriptions come from a background job queued below.
        inline_llm = bool(settings.LLM_BASE_URL)
        started = self._step("text descriptions (document + metadata templates" + (" + LLM" if inline_llm else "")
                             + ")")
        sources = "document,metadata" + (",llm" if inline_llm else "")
        call_command("source_descriptions", sources=sources, llm_perspectives=settings.DEMO_LLM_PERSPECTIVES)
        call_command("mine_descriptions")
        self._done(started, f"{Description.objects.filter(kept=True).count()} kept descriptions")

        started = self._step("pretrained audio features (musicnn, cached)")
        # one process barely uses the second core; "auto": the timbre views train_crossmusim pools from, if its
        # config uses any (none by default: docs/model.md, timbre views)
        call_command("extract_audio_features", workers=2, timbre_views="auto")
        self._done(started)

        for arm, train in (("baseline", "train_baseline"), ("crossmusim", "train_crossmusim")):
            started = self._step(f"{arm} arm")
            active = EmbeddingModel.objects.filter(active_for_arm=arm).first()
            if active is not None and active.indexed_at is not None:
                self._done(started, f"{active} already trained, indexed and active")
                continue
            if not EmbeddingModel.objects.filter(kind=arm).exists():
                kwargs = {"seed": seed} if arm == "crossmusim" else {}
                if arm == "crossmusim" and steps:
                    kwargs["steps"] = steps
                call_command(train, **kwargs)
            model = EmbeddingModel.objects.filter(kind=arm).order_by("-created_at").first()
            call_command("index_embeddings", str(model.pk), activate_arm=arm)
            self._done(started, f"{model} indexed and active for the {arm} arm")

        started = self._step("admin login, player API key, experiment")
        password = settings.ADMIN_PASSWORD or _secret_file(admin_password_file(), lambda: secrets.token_urlsafe(12))
        user_model = get_user_model()
        admin = user_model.objects.filter(username=ADMIN_USERNAME).first()
        if admin is None:
            user_model.objects.create_superuser(ADMIN_USERNAME, "admin@example.invalid", password)
        elif not admin.check_password(password):
            admin.set_password(password)
            admin.save(update_fields=["password"])

        key_file = player_key_file()
        key = key_file.read_text().strip() if key_file.exists() else ""
        if not key or not ApiKey.objects.filter(key_hash=hash_api_key(key), active=True).exists():
            _, key = api_key_create(name="demo player simulator")
            key_file.write_text(key)
            key_file.chmod(0o600)

        experiment = Experiment.objects.filter(name=EXPERIMENT_NAME).first()
        if experiment is None:
            # argv form: call_command cannot pass a repeated (append) option as a keyword.
            call_command(
                "create_experiment", "--name", EXPERIMENT_NAME,
                "--variant", "control=baseline", "--variant", "treatment=crossmusim", "--weights", "50,50",
                "--hypothesis", "Text-guided (cross-modal) embeddings raise the CTR of 'more like this'.",
                "--start",
            )
            experiment = Experiment.objects.get(name=EXPERIMENT_NAME)
        self._done(started, f"experiment #{experiment.pk} '{experiment.name}' is {experiment.status}")

        if not inline_llm and llm_configured():
            started = self._step("LLM descriptions (shipped SmolLM2-135M, background job on the worker)")
            if llm_text_model_exists():
                self._done(started, "a CrossMuSim model trained with LLM text exists already")
            else:
                from abplatform.celery import app

                # by name: the task module reaches training, which the project package may not import
                result = app.send_task("recommender.llm_text_run", kwargs={
                    "perspectives": settings.DEMO_LLM_PERSPECTIVES.split(","), "seed": seed})
                self._done(started, f"queued as task {result.id}: sources every track ({settings.DEMO_LLM_PERSPECTIVES}"
                           " prompts), mines, retrains the crossmusim arm on the text mix chosen on validation; "
                           "progress in var/celery.log and in `manage.py mine_descriptions`' summary")
