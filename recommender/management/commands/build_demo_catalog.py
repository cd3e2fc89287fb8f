import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.democatalog import summary_rows
from recommender.democatalog.render import SoundFontMissingError
from recommender.services.democatalog import build_demo_catalog

DEFAULT_SIZE = 2000


class Command(BaseCommand):
    help = (
        "Build the demo catalog from the music21 corpus (rendered with FluidSynth and a General MIDI "
        "SoundFont; SOUNDFONT=path.sf2 overrides Debian's fluid-soundfont-gm) and load it into the catalog."
    )

    def add_arguments(self, parser):
        parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"number of tracks (default {DEFAULT_SIZE})")
        parser.add_argument("--seed", type=int, default=0, help="selection, instruments and splits seed")
        parser.add_argument("--out", type=Path, default=None, help="audio folder (default CATALOG_DIR/demo)")
        parser.add_argument("--cache", type=Path, default=None, help="parse cache folder (default var/democache)")
        parser.add_argument("--workers", type=int, default=2, help="parallel processes for parsing and rendering")
        parser.add_argument("--soundfont", default=None, help="General MIDI .sf2 (default $SOUNDFONT or Debian's)")

    def handle(self, *args, size, seed, out, cache, workers, soundfont, **options):
        if size < 1:
            raise CommandError("--size must be at least 1")
        started = time.monotonic()
        try:
            result = build_demo_catalog(
                size=size, seed=seed, out_dir=out, cache_dir=cache, workers=max(1, workers), soundfont=soundfont,
                ingest_progress=lambda items: tqdm(items, desc="ingest", unit="file", disable=None),
            )
        except SoundFontMissingError as error:
            raise CommandError(str(error)) from error
        elapsed = time.monotonic() - started
        build = result.build
        for name, reason in build.skipped:
            self.stderr.write(f"skipped {name}: {reason}")
        style_rows, ensemble_rows = summary_rows(build)
        header = ("style", "tracks", "works", "train", "val", "test", "ensembles")
        self.stdout.write("\n{:<26} {:>6} {:>6} {:>6} {:>5} {:>5} {:>9}".format(*header))
        for style, tracks, works, train, val, test, ensembles in style_rows:
            self.stdout.write(f"{style:<26} {tracks:>6} {works:>6} {train:>6} {val:>5} {test:>5} {ensembles:>9}")
        self.stdout.write(f"{'total':<26} {len(build.tracks):>6}")
        self.stdout.write(f"\n{'instrument ensemble':<26} {'tracks':>6} {'styles':>6}")
        for name, tracks, styles in ensemble_rows:
            self.stdout.write(f"{name:<26} {tracks:>6} {styles:>6}")
        ingest = result.ingest
        self.stdout.write(
            f"\n{len(build.tracks)} tracks in {build.out_dir}; "
            f"scores parsed {build.parsed} (cached {build.parse_cached}), "
            f"rendered {build.rendered} (reused {build.render_reused}), skipped {len(build.skipped)}; "
            f"ingest: {ingest.created} new, {ingest.updated} updated, {ingest.unchanged} unchanged, "
            f"{len(ingest.failed)} failed; {result.removed_tracks} stale tracks removed; "
            f"{result.split_rows} split rows"
        )
        timings = ", ".join(f"{name} {value:.1f} s" for name, value in build.timings.items())
        self.stdout.write(f"took {elapsed:.1f} s ({timings})")
