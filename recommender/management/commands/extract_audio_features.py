import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.selectors import split_parts, tracks_for_ids
from recommender.services.embedding_runtime import backbone_extractor, set_torch_threads
from recommender.services.embedding_training import crossmusim_train_config
from recommender.services.embeddings import DEFAULT_BACKBONE, audio_features_extract, feature_cache
from recommender.services.timbre_views import TimbreView, timbre_view_cache, timbre_view_features


def _view_count(value) -> int:
    if str(value) == "auto":
        return crossmusim_train_config().augment.audio_views
    try:
        count = int(value)
    except ValueError:
        raise CommandError(f"--timbre-views takes a count or 'auto', not {value!r}") from None
    if count < 0:
        raise CommandError("--timbre-views must be 0 or more")
    return count


class Command(BaseCommand):
    help = ("Cache the pretrained backbone's per-patch features of every track (resumable: cached tracks are "
            "skipped; unreadable files are named and skipped); with --timbre-views, also the timbre views that "
            "train_crossmusim pools the training tracks from.")

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int,
                            help="torch CPU threads (default: torch's choice; 1 is faster on a busy shared machine)")
        parser.add_argument("--model", default=DEFAULT_BACKBONE, help="Backbone: MTT_musicnn (default) or MSD_musicnn")
        parser.add_argument("--tracks", nargs="+", type=int, help="Only these track ids")
        parser.add_argument("--workers", type=int, default=1,
                            help="Processes, each on its share of the tracks with one torch thread (musicnn on one "
                                 "process barely uses a second core; two processes do)")
        parser.add_argument("--timbre-views", default="0", metavar="N|auto",
                            help="Also cache N timbre views (recommender.services.timbre_views; auto: as many as "
                                 "train_crossmusim uses) of each track of --split's train part (of --tracks, when "
                                 "given): what train_crossmusim would otherwise compute on one process")
        parser.add_argument("--split", default="default", help="The split whose train part gets timbre views")

    def handle(self, *args, model, tracks, threads=None, workers=1, timbre_views="0", split="default", **options):
        set_torch_threads(threads)
        views = _view_count(timbre_views)
        selected = list(tracks_for_ids(tracks))
        if tracks and len(selected) != len(set(tracks)):
            missing = sorted(set(tracks) - {t.pk for t in selected})
            raise CommandError(f"no track with id {', '.join(map(str, missing))}")
        cache = feature_cache(model)
        if workers > 1:
            self._in_processes(model, [t for t in selected if not cache.has(t.checksum)], workers)
        try:
            report = audio_features_extract(
                tracks=selected, extractor_factory=lambda: backbone_extractor(model), cache=cache,
                progress=lambda items: tqdm(items, desc=f"features {model}", unit="track", disable=None),
            )
        except (ImportError, ValueError, RuntimeError, OSError) as error:
            raise CommandError(f"cannot load backbone {model!r}: {error}") from error
        for name, reason in report.failed:
            self.stderr.write(f"skipped {name}: {reason}")
        rate = report.seconds / report.extracted if report.extracted else 0.0
        self.stdout.write(
            f"{model}: {report.extracted} extracted ({rate:.2f} s/track), {report.cached} already cached, "
            f"{len(report.failed)} skipped -> {cache.root}"
        )
        if views > 0:
            self._timbre_views(model, selected if tracks else self._train_part(selected, split), views, workers)

    @staticmethod
    def _train_part(selected: list, split: str) -> list:
        parts = split_parts(split)
        if not parts:
            raise CommandError(f"no dataset split named {split!r}: timbre views are made for its train part")
        return [t for t in selected if parts.get(t.pk) == "train"]

    def _timbre_views(self, model: str, selected: list, views: int, workers: int) -> None:
        cache = timbre_view_cache(model)
        if workers > 1:
            todo = [t for t in selected
                    if not all(cache.has(TimbreView(t.checksum, k, t.audio_path).checksum) for k in range(views))]
            self._in_processes(model, todo, workers, ["--timbre-views", str(views)])
        _, report = timbre_view_features(
            tracks=selected, views=views, backbone=model, extractor_factory=lambda: backbone_extractor(model),
            progress=lambda items: tqdm(items, desc=f"timbre views {model}", unit="view", disable=None))
        for name, reason in report.failed:
            self.stderr.write(f"no timbre view of {name}: {reason}")
        rate = report.seconds / report.extracted if report.extracted else 0.0
        self.stdout.write(
            f"timbre views: {report.extracted} extracted ({rate:.2f} s/view), {report.cached} already cached, "
            f"{len(report.failed)} skipped, {views} per track of {len(selected)} -> {cache.root}")

    def _in_processes(self, model: str, todo: list, workers: int, extra: list[str] | None = None) -> None:
        """Extract ``todo`` in ``workers`` child processes (every ``workers``-th track each); the cache is shared,
        so this process then finds them cached."""
        if len(todo) < 2 * workers:
            return
        manage = Path(settings.BASE_DIR) / "manage.py"
        children = [subprocess.Popen([sys.executable, str(manage), "extract_audio_features", "--model", model,
                                      "--threads", "1", *(extra or []),
                                      "--tracks", *[str(t.pk) for t in todo[k::workers]]],
                                     stdout=subprocess.DEVNULL) for k in range(workers)]
        failed = [child.wait() for child in children]
        if any(failed):
            self.stderr.write(f"a feature worker exited with {max(failed)}; the rest is extracted here")
