from django.core.management.base import BaseCommand, CommandError

from recommender.crossmusim.descriptions import MiningConfig
from recommender.services.descriptions import (
    descriptions_summary,
    format_summary,
    mine_descriptions,
    parse_track_ids,
    tracks_without_kept_description,
)


class Command(BaseCommand):
    help = ("Mine sourced descriptions: reject boilerplate, lyrics, off-topic, too short/long and near-duplicate "
            "texts with a reason, score relevance, keep the best few per track. Mines tracks with unjudged "
            "descriptions; --all judges every track again.")

    def add_arguments(self, parser):
        defaults = MiningConfig()
        parser.add_argument("--tracks", default="", help="Track ids, e.g. 1,2,10-20 (default: all tracks)")
        parser.add_argument("--all", action="store_true", dest="remine", help="Judge every track again")
        parser.add_argument("--max-per-track", type=int, default=defaults.max_per_track)
        parser.add_argument("--min-score", type=float, default=defaults.min_score)
        parser.add_argument("--duplicate-threshold", type=float, default=defaults.near_duplicate_threshold,
                            help="MiniLM cosine at or above which two texts are near-duplicates")
        parser.add_argument("--min-words", type=int, default=defaults.min_words)
        parser.add_argument("--max-words", type=int, default=defaults.max_words)

    def handle(self, *args, tracks, remine, max_per_track, min_score, duplicate_threshold, min_words, max_words,
               **options):
        try:
            track_ids = parse_track_ids(tracks)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if max_per_track < 1:
            raise CommandError("--max-per-track must be at least 1")
        config = MiningConfig(max_per_track=max_per_track, min_score=min_score,
                              near_duplicate_threshold=duplicate_threshold, min_words=min_words, max_words=max_words)
        report = mine_descriptions(track_ids=track_ids, remine=remine, config=config, progress=True)
        self.stdout.write(f"mined {report.tracks} tracks: {report.judged} descriptions judged, {report.kept} kept")
        self.stdout.write(format_summary(descriptions_summary(track_ids)))
        missing = tracks_without_kept_description(track_ids)
        if missing:
            shown = ", ".join(str(i) for i in missing[:20]) + (" …" if len(missing) > 20 else "")
            self.stdout.write(f"{len(missing)} tracks have no kept description: {shown}")
        else:
            self.stdout.write("every track has at least one kept description")
