"""``manage.py start_holdout --placement P --share 0.05 [--name N]``: hold users of a placement on its model now."""

from django.core.management.base import BaseCommand, CommandError

from experiments.lifecycle import holdout_start
from experiments.services import ExperimentError


class Command(BaseCommand):
    help = ("Keep SHARE of a placement's users on the model it serves now, whatever ships after, against an equal "
            "measured share served whatever the placement ships (its results page compares the two).")

    def add_arguments(self, parser):
        parser.add_argument("--placement", default="track_page")
        parser.add_argument("--share", type=float, default=0.05, help="held share, e.g. 0.05 (takes twice that)")
        parser.add_argument("--name", default="")

    def handle(self, *args, placement, share, name, **options):
        try:
            holdout = holdout_start(placement=placement, share=share, name=name)
        except ExperimentError as error:
            raise CommandError(str(error)) from error
        held = holdout.variants.get(key="holdout").embedding_model
        self.stdout.write(f"holdout {holdout.pk} {holdout.name!r} on {placement}: {share:.1%} held on {held}, "
                          f"{share:.1%} measured on whatever {placement} ships")
