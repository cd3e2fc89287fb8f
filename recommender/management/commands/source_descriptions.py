from django.core.management.base import BaseCommand, CommandError

from recommender.services.descriptions import (
    descriptions_summary,
    format_summary,
    llm_perspectives_from_settings,
    parse_sources,
    parse_track_ids,
    source_descriptions,
)


class Command(BaseCommand):
    help = ("Source text descriptions of tracks from web pages, shipped documents, an LLM and metadata templates. "
            "Resumable: units of work that succeeded before are skipped (use --force to run them again).")

    def add_arguments(self, parser):
        parser.add_argument("--sources", default="document,web,metadata,llm",
                            help="Comma-separated: web,document,llm,metadata (default: all; llm is LLM_BASE_URL's "
                                 "server, else the shipped local model)")
        parser.add_argument("--llm-perspectives", default=None,
                            help="Prompt perspectives of the llm source, e.g. style,mood (default: LLM_PERSPECTIVES, "
                                 "else all five)")
        parser.add_argument("--tracks", default="", help="Track ids, e.g. 1,2,10-20 (default: all tracks)")
        parser.add_argument("--force", action="store_true", help="Run units again even if they succeeded before")
        parser.add_argument("--url-template", action="append", default=[], metavar="SITE=TEMPLATE",
                            help="URL template for the web source, e.g. wiki=https://en.wikipedia.org/wiki/{title_slug}"
                                 " (repeatable; default: WEB_URL_TEMPLATES)")

    def handle(self, *args, sources, tracks, force, url_template, llm_perspectives=None, **options):
        try:
            names = parse_sources(sources)
            if llm_perspectives is not None:
                llm_perspectives_from_settings(llm_perspectives)  # an unknown name fails here, before any work
            track_ids = parse_track_ids(tracks)
            templates = None
            if url_template:
                templates = {}
                for item in url_template:
                    site, sep, template = item.partition("=")
                    if not sep or not template:
                        raise ValueError(f"--url-template {item!r} is not SITE=TEMPLATE")
                    templates[site] = template
        except ValueError as error:
            raise CommandError(str(error)) from error
        report = source_descriptions(sources=names, track_ids=track_ids, force=force, progress=True,
                                     url_templates=templates, llm_perspectives=llm_perspectives)
        for name, why in report.skipped_sources.items():
            self.stdout.write(f"{name}: skipped, {why}")
        for name, stats in report.per_source.items():
            failures = ", ".join(f"{reason} {count}" for reason, count in stats.failures.most_common()) or "none"
            self.stdout.write(f"{name}: {stats.units_run} units run, {stats.units_skipped} already done, "
                              f"{stats.found} descriptions ({stats.new} new), failures: {failures}")
        if report.llm_usage:
            usage = report.llm_usage
            self.stdout.write(f"llm tokens: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion, "
                              f"{usage['requests']} requests, {usage['cache_hits']} cache hits")
        self.stdout.write(format_summary(descriptions_summary(track_ids)))
