import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.selectors import tracks_for_ids
from recommender.services.embedding_runtime import backbone_extractor, set_torch_threads
from recommender.services.embeddings import DEFAULT_BACKBONE, audio_features_extract, feature_cache


class Command(BaseCommand):
    help = ("Cache the pretrained backbone's per-patch features of every track (resumable: cached tracks are "
            "skipped; unreadable files are named and skipped).")

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int,
                            help="torch CPU threads (default: torch's choice; 1 is faster on a busy shared machine)")
        parser.add_argument("--model", default=DEFAULT_BACKBONE, help="Backbone: MTT_musicnn (default) or MSD_musicnn")
        parser.add_argument("--tracks", nargs="+", type=int, help="Only these track ids")
        parser.add_argument("--workers", type=int, default=1,
                            help="Processes, each on its share of the tracks with one torch thread (musicnn on one "
                                 "process barely uses a second core; two processes do)")

    def handle(self, *args, model, tracks, threads=None, workers=1, **options):
        set_torch_threads(threads)
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

    def _in_processes(self, model: str, todo: list, workers: int) -> None:
        """Extract ``todo`` in ``workers`` child processes (every ``workers``-th track each); the cache is shared,
        so this process then finds them cached."""
        if len(todo) < 2 * workers:
            return
        manage = Path(settings.BASE_DIR) / "manage.py"
        children = [subprocess.Popen([sys.executable, str(manage), "extract_audio_features", "--model", model,
                                      "--threads", "1", "--tracks", *[str(t.pk) for t in todo[k::workers]]],
                                     stdout=subprocess.DEVNULL) for k in range(workers)]
        failed = [child.wait() for child in children]
        if any(failed):
            self.stderr.write(f"a feature worker exited with {max(failed)}; the rest is extracted here")
