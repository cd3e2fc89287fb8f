"""Description sourcing and mining: the Django shell around ``recommender.crossmusim.descriptions``.

``source_descriptions`` runs the sources over tracks and stores every candidate as a
``Description`` (unique per track, source, origin and text) and every unit of work as a
``DescriptionFetch`` (ok or failed, with its reason). A unit that succeeded is not run
again, so an interrupted run resumes where it stopped and a repeated run is a no-op.
``mine_descriptions`` judges each track's candidates and writes kept/score/reason.
``descriptions_summary`` and ``format_summary`` give the per-source table.

Configuration comes from Django settings (abplatform/settings.py, each from the environment
variable of its name): LLM_BASE_URL, LLM_API_KEY, LLM_MODEL (+ LLM_TIMEOUT, LLM_CONCURRENCY,
LLM_MAX_RETRIES, LLM_JSON_MODE, LLM_CACHE_DIR), WEB_URL_TEMPLATES (JSON {site: template}),
WEB_MIN_INTERVAL_S, WEB_TIMEOUT_S, WEB_MAX_BYTES, WEB_MAX_RETRIES, WEB_USER_AGENT, WEB_CACHE_DIR.
This module hands them to the plain-Python sources, which read no configuration themselves.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from tqdm import tqdm

from recommender.crossmusim.descriptions import (
    Candidate,
    ChatCompletionsClient,
    DocumentSource,
    LLMConfig,
    LLMSource,
    MetadataTemplateSource,
    MiningConfig,
    Perspective,
    SourceName,
    SourceResult,
    TrackInfo,
    WebConfig,
    WebFetcher,
    WebSource,
    mine_many,
    text_hash,
)
from recommender.crossmusim.descriptions.text import normalise_text
from recommender.crossmusim.descriptions.web import track_urls_from_metadata
from recommender.models import Description, DescriptionFetch, Track

# Document and web text first: the LLM prompts carry it as context.
SOURCE_ORDER = (SourceName.DOCUMENT, SourceName.WEB, SourceName.METADATA, SourceName.LLM)
MINING_BATCH_TRACKS = 32


@dataclass
class SourceRunStats:
    units_run: int = 0
    units_skipped: int = 0
    found: int = 0
    new: int = 0
    failures: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"units_run": self.units_run, "units_skipped": self.units_skipped, "found": self.found,
                "new": self.new, "failures": dict(self.failures)}


@dataclass
class SourcingReport:
    per_source: dict[str, SourceRunStats] = field(default_factory=dict)
    skipped_sources: dict[str, str] = field(default_factory=dict)
    llm_usage: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"per_source": {name: stats.as_dict() for name, stats in self.per_source.items()},
                "skipped_sources": self.skipped_sources, "llm_usage": self.llm_usage}


@dataclass
class MiningReport:
    tracks: int = 0
    judged: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"tracks": self.tracks, "judged": self.judged, "kept": self.kept, "rejected": dict(self.rejected)}


# --- configuration ---------------------------------------------------------------------------------
LLM_SETTINGS = ("LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL", "LLM_TIMEOUT", "LLM_CONCURRENCY", "LLM_MAX_RETRIES",
                "LLM_JSON_MODE", "LLM_CACHE_DIR")


LOCAL_LLM_TIMEOUT_S = 900.0  # a request waits its turn behind a whole batch on a CPU


def llm_configured() -> bool:
    """Whether the llm source can run: an endpoint is set, or the shipped local model may be served."""
    return bool(settings.LLM_BASE_URL) or settings.LLM_LOCAL


def llm_config_from_settings(*, start_local: bool = True, **overrides: object) -> LLMConfig | None:
    """The LLM client's config from the LLM_* settings. With LLM_BASE_URL unset and LLM_LOCAL on, the client
    talks to the platform's own server on the shipped model (started here when ``start_local``); ``None``
    when no LLM is configured at all."""
    values = {name: getattr(settings, name) for name in LLM_SETTINGS}
    overrides.setdefault("descriptions_per_prompt", settings.LLM_DESCRIPTIONS_PER_PROMPT)
    if not settings.LLM_BASE_URL and settings.LLM_LOCAL:
        from recommender.services.local_llm import ensure_local_llm, local_model_name

        values.update({"LLM_BASE_URL": ensure_local_llm() if start_local else "http://127.0.0.1:0/v1",
                       "LLM_MODEL": local_model_name(), "LLM_API_KEY": "", "LLM_TIMEOUT": LOCAL_LLM_TIMEOUT_S,
                       "LLM_CONCURRENCY": settings.LLM_LOCAL_MAX_BATCH, "LLM_JSON_MODE": True})
    return LLMConfig.from_mapping(values, **overrides)


def llm_perspectives_from_settings(value: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The prompt perspectives to ask (LLM_PERSPECTIVES, or ``value``): all five when empty; unknown ones raise."""
    raw = settings.LLM_PERSPECTIVES if value is None else value
    names = [v.strip() for v in (raw.split(",") if isinstance(raw, str) else raw) if v.strip()]
    unknown = sorted(set(names) - set(Perspective.ALL))
    if unknown:
        raise ValueError(f"unknown perspective(s) {', '.join(unknown)}; choose from {', '.join(Perspective.ALL)}")
    return tuple(p for p in Perspective.ALL if p in names) or Perspective.ALL


def web_config_from_settings() -> WebConfig:
    """The crawler's config from the WEB_* settings (an empty WEB_USER_AGENT keeps the crawler's own agent)."""
    return WebConfig(
        user_agent=settings.WEB_USER_AGENT or WebConfig.user_agent,
        timeout_s=settings.WEB_TIMEOUT_S,
        max_bytes=settings.WEB_MAX_BYTES,
        min_interval_s=settings.WEB_MIN_INTERVAL_S,
        max_retries=settings.WEB_MAX_RETRIES,
        cache_dir=Path(settings.WEB_CACHE_DIR),
    )


def url_templates_from_settings() -> dict[str, str]:
    """WEB_URL_TEMPLATES parsed here, when the web source runs: a malformed value fails that run, not every process."""
    raw = settings.WEB_URL_TEMPLATES.strip()
    if not raw:
        return {}
    templates = json.loads(raw)
    if not isinstance(templates, dict):
        raise ValueError("WEB_URL_TEMPLATES must be a JSON object {site: url template}")
    return {str(k): str(v) for k, v in templates.items()}


def parse_sources(value: str | Sequence[str] | None) -> list[str]:
    """Source names in run order; raises ValueError naming an unknown one."""
    if value is None:
        return list(SOURCE_ORDER)
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = sorted(set(names) - set(SourceName.ALL))
    if unknown:
        raise ValueError(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCE_ORDER)}")
    return [name for name in SOURCE_ORDER if name in names]


def parse_track_ids(value: str | None) -> list[int] | None:
    """'1,2,10-12' -> [1, 2, 10, 11, 12]; None or '' -> None (all tracks)."""
    if not value:
        return None
    ids: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            ids.extend(range(int(low), int(high) + 1))
        else:
            ids.append(int(part))
    return ids


# --- sourcing -----------------------------------------------------------------------------------------
def track_info(track: Track) -> TrackInfo:
    labels = dict(track.labels or {})
    return TrackInfo(
        track_id=track.pk, title=track.title, composer=track.artist or str(labels.get("composer") or ""),
        collection=track.album or str(labels.get("collection") or ""), labels=labels,
        document_text=track.document_text or "", metadata=dict(track.metadata or {}),
        urls=tuple(track_urls_from_metadata(track.metadata or {})),
    )


def _tracks(track_ids: Iterable[int] | None):
    queryset = Track.objects.order_by("id")
    if track_ids is not None:
        queryset = queryset.filter(id__in=list(track_ids))
    return queryset


def _sourced_context(track_ids: list[int]) -> dict[int, list[str]]:
    """Document and web text per track, in a stable order, for the LLM prompts."""
    context: dict[int, list[str]] = defaultdict(list)
    rows = (Description.objects.filter(track_id__in=track_ids, source__in=[SourceName.DOCUMENT, SourceName.WEB])
            .exclude(perspective="lyrics").order_by("track_id", "source", "id").values_list("track_id", "text"))
    for track_id, text in rows:
        if len(context[track_id]) < 3:
            context[track_id].append(text)
    return context


def _store_result(track_id: int, result: SourceResult) -> int:
    """Store one unit's descriptions and its log row; returns how many descriptions were new."""
    new = 0
    with transaction.atomic():
        for item in result.descriptions:
            text = normalise_text(item.text)
            if not text:
                continue
            _row, created = Description.objects.get_or_create(
                track_id=track_id, source=item.source, origin=item.origin[:1000], text_hash=text_hash(text),
                defaults={"text": text, "perspective": item.perspective[:50], "details": item.details},
            )
            new += created
        fetch, created = DescriptionFetch.objects.get_or_create(
            track_id=track_id, source=result.source, origin=result.origin[:1000],
            defaults={"ok": result.ok, "error": result.error[:200], "found": len(result.descriptions),
                      "details": result.details},
        )
        if not created:
            fetch.ok, fetch.error, fetch.found = result.ok, result.error[:200], len(result.descriptions)
            fetch.details, fetch.attempts = result.details, fetch.attempts + 1
            fetch.save()
    return new


def source_descriptions(*, sources: Sequence[str] | str | None = None, track_ids: Iterable[int] | None = None,
                        force: bool = False, progress: bool = False, llm_config: LLMConfig | None = None,
                        web_config: WebConfig | None = None, url_templates: dict[str, str] | None = None,
                        llm_perspectives: Sequence[str] | str | None = None,
                        ) -> SourcingReport:
    """Run the sources over the tracks (all by default); resumable: units that succeeded before are skipped.

    ``llm_perspectives`` (default LLM_PERSPECTIVES) are the prompts asked per track."""
    names = parse_sources(sources)
    report = SourcingReport()
    infos = [track_info(track) for track in _tracks(track_ids)]
    for name in names:
        source, closer, why_not = _build_source(name, infos, llm_config=llm_config, web_config=web_config,
                                                url_templates=url_templates, llm_perspectives=llm_perspectives)
        if source is None:
            report.skipped_sources[name] = why_not
            continue
        stats = report.per_source.setdefault(name, SourceRunStats())
        done = set() if force else set(
            DescriptionFetch.objects.filter(source=name, ok=True, track_id__in=[i.track_id for i in infos])
            .values_list("track_id", "origin"))
        work = []
        for info in infos:
            for unit in source.units(info):
                if (info.track_id, unit[:1000]) in done:
                    stats.units_skipped += 1
                else:
                    work.append((info, unit))
        try:
            for info, _unit, result in tqdm(source.fetch_many(work), total=len(work), desc=f"source {name}",
                                            disable=not progress, unit="unit"):
                stats.units_run += 1
                stats.found += len(result.descriptions)
                stats.new += _store_result(int(info.track_id), result)
                if not result.ok:
                    stats.failures[result.error] += 1
        finally:
            if closer is not None:
                if isinstance(source, LLMSource):
                    report.llm_usage = source.client.usage.as_dict()
                closer()
    return report


def _build_source(name, infos, *, llm_config, web_config, url_templates, llm_perspectives=None):
    """``(source, close callback, why it is skipped)`` for one source name."""
    if name == SourceName.DOCUMENT:
        return DocumentSource(), None, ""
    if name == SourceName.METADATA:
        return MetadataTemplateSource(), None, ""
    if name == SourceName.WEB:
        templates = url_templates if url_templates is not None else url_templates_from_settings()
        fetcher = WebFetcher(web_config or web_config_from_settings())
        return WebSource(fetcher, templates), fetcher.close, ""
    if name == SourceName.LLM:
        config = llm_config or llm_config_from_settings()
        if config is None:
            return None, None, "no LLM configured (set LLM_BASE_URL, LLM_MODEL, LLM_API_KEY, or LLM_LOCAL=1)"
        client = ChatCompletionsClient(config)
        context = _sourced_context([int(i.track_id) for i in infos])
        perspectives = llm_perspectives_from_settings(llm_perspectives)
        return LLMSource(client, perspectives=perspectives, sourced_text=context), client.close, ""
    raise ValueError(f"unknown source {name}")


# --- mining -------------------------------------------------------------------------------------------
def default_encoder() -> Callable[[Sequence[str]], np.ndarray]:
    from recommender.crossmusim.text_encoder import encode_texts

    return encode_texts


def mine_descriptions(*, track_ids: Iterable[int] | None = None, remine: bool = False,
                      config: MiningConfig | None = None, progress: bool = False,
                      encode: Callable[[Sequence[str]], np.ndarray] | None = None,
                      model_scores: Mapping[int, float] | None = None) -> MiningReport:
    """Mine the tracks that have unjudged descriptions (all tracks with ``remine``); idempotent per track.

    ``model_scores`` (Description id -> 0..1) is a trained model's audio-text score, when one exists.
    """
    config = config or MiningConfig()
    encode = encode or default_encoder()
    descriptions = Description.objects.all()
    if track_ids is not None:
        descriptions = descriptions.filter(track_id__in=list(track_ids))
    if not remine:
        descriptions = descriptions.filter(track_id__in=Description.objects.filter(kept__isnull=True)
                                           .values("track_id"))
    ids = sorted(set(descriptions.values_list("track_id", flat=True)))
    report = MiningReport()
    with tqdm(total=len(ids), desc="mine", disable=not progress, unit="track") as bar:
        for start in range(0, len(ids), MINING_BATCH_TRACKS):
            batch = ids[start:start + MINING_BATCH_TRACKS]
            _mine_batch(batch, config, encode, report, model_scores)
            bar.update(len(batch))
    return report


def _mine_batch(track_ids: list[int], config: MiningConfig, encode, report: MiningReport,
                model_scores: Mapping[int, float] | None = None) -> None:
    tracks = {track.pk: track_info(track) for track in Track.objects.filter(id__in=track_ids)}
    rows: dict[int, list[Description]] = defaultdict(list)
    for row in Description.objects.filter(track_id__in=track_ids).order_by("id"):
        rows[row.track_id].append(row)
    items = [(tracks[track_id], [Candidate(row.pk, row.text, row.source, row.perspective) for row in group])
             for track_id, group in rows.items()]
    updates = []
    for group, track_verdicts in zip(rows.values(), mine_many(items, config, encode, model_scores), strict=True):
        verdicts = {v.key: v for v in track_verdicts}
        report.tracks += 1
        for row in group:
            verdict = verdicts[row.pk]
            row.kept, row.reason, row.score = verdict.kept, verdict.reason, verdict.score
            row.details = {**(row.details or {}), "mining": verdict.details}
            updates.append(row)
            report.judged += 1
            if verdict.kept:
                report.kept += 1
            else:
                report.rejected[verdict.reason] += 1
    with transaction.atomic():
        Description.objects.bulk_update(updates, ["kept", "reason", "score", "details"], batch_size=500)


# --- summary ------------------------------------------------------------------------------------------
def descriptions_summary(track_ids: Iterable[int] | None = None) -> list[dict]:
    """Per source: fetched (stored descriptions), kept, rejected by reason, unmined, failed units by reason."""
    descriptions = Description.objects.all()
    fetches = DescriptionFetch.objects.filter(ok=False)
    if track_ids is not None:
        ids = list(track_ids)
        descriptions = descriptions.filter(track_id__in=ids)
        fetches = fetches.filter(track_id__in=ids)
    table: dict[str, dict] = {
        name: {"source": name, "fetched": 0, "kept": 0, "rejected": 0, "unmined": 0, "failures": 0,
               "rejected_by_reason": {}, "failures_by_reason": {}}
        for name in SOURCE_ORDER
    }
    for source, kept, reason, count in _grouped(descriptions, "source", "kept", "reason"):
        row = table[source]
        row["fetched"] += count
        if kept is None:
            row["unmined"] += count
        elif kept:
            row["kept"] += count
        else:
            row["rejected"] += count
            key = reason or "unknown"
            row["rejected_by_reason"][key] = row["rejected_by_reason"].get(key, 0) + count
    for source, error, count in _grouped(fetches, "source", "error"):
        table[source]["failures"] += count
        table[source]["failures_by_reason"][error] = count
    return [table[name] for name in SOURCE_ORDER]


def _grouped(queryset, *fields):
    from django.db.models import Count

    return [(*(row[f] for f in fields), row["n"]) for row in
            queryset.values(*fields).annotate(n=Count("id")).order_by(*fields)]


def format_summary(rows: list[dict]) -> str:
    """The summary as a fixed-width text table, with the reasons under each source."""
    header = f"{'source':<10} {'fetched':>8} {'kept':>6} {'rejected':>9} {'unmined':>8} {'failures':>9}"
    lines = [header, "-" * len(header)]
    totals = Counter()
    for row in rows:
        lines.append(f"{row['source']:<10} {row['fetched']:>8} {row['kept']:>6} {row['rejected']:>9} "
                     f"{row['unmined']:>8} {row['failures']:>9}")
        for reason, count in sorted(row["rejected_by_reason"].items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':<10}   rejected: {reason}: {count}")
        for reason, count in sorted(row["failures_by_reason"].items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':<10}   failed: {reason}: {count}")
        totals.update({k: row[k] for k in ("fetched", "kept", "rejected", "unmined", "failures")})
    lines.append("-" * len(header))
    lines.append(f"{'total':<10} {totals['fetched']:>8} {totals['kept']:>6} {totals['rejected']:>9} "
                 f"{totals['unmined']:>8} {totals['failures']:>9}")
    return "\n".join(lines)


def tracks_without_kept_description(track_ids: Iterable[int] | None = None) -> list[int]:
    """Tracks that mining left with no kept description (the done-when check)."""
    return list(_tracks(track_ids).exclude(descriptions__kept=True).values_list("id", flat=True))
