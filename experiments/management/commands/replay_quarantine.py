"""manage.py replay_quarantine [--id N ...] [--list]: put quarantined outbox rows back in the outbox."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from experiments.events.quarantine import replay_quarantined
from experiments.models import EventQuarantine


class Command(BaseCommand):
    help = ("Move quarantined event rows (rows the worker could not land) back into the outbox, where the relay "
            "sends them again. Fix the cause first, or they come back to the quarantine.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--id", type=int, action="append", dest="ids", help="only this row (repeatable)")
        parser.add_argument("--list", action="store_true", help="list the quarantined rows, replay nothing")

    def handle(self, *args, ids: list[int] | None = None, list: bool = False, **options) -> None:
        if list:
            rows = EventQuarantine.objects.order_by("id")
            for row in rows:
                when = row.quarantined_at.strftime("%Y-%m-%d %H:%M:%S")
                self.stdout.write(f"{row.id}\t{row.get_kind_display()}\t{row.event_id}\t{when}\t{row.error}")
            self.stdout.write(f"{rows.count()} quarantined row(s)")
            return
        count = replay_quarantined(ids)
        self.stdout.write(self.style.SUCCESS(f"{count} row(s) moved back into the outbox"))
