"""Celery tasks of the recommender app: thin wrappers that take ids and call the services."""

from celery import shared_task

from recommender.crossmusim.descriptions import MiningConfig
from recommender.services.descriptions import descriptions_summary, mine_descriptions, source_descriptions


@shared_task(name="recommender.source_descriptions")
def source_descriptions_task(sources: list[str] | None = None, track_ids: list[int] | None = None,
                             force: bool = False) -> dict:
    """Run ``source_descriptions`` in a worker; returns the run report and the per-source summary."""
    report = source_descriptions(sources=sources, track_ids=track_ids, force=force)
    return {"report": report.as_dict(), "summary": descriptions_summary(track_ids)}


@shared_task(name="recommender.mine_descriptions")
def mine_descriptions_task(track_ids: list[int] | None = None, remine: bool = False,
                           max_per_track: int | None = None) -> dict:
    """Run ``mine_descriptions`` in a worker; returns the mining report and the per-source summary."""
    config = MiningConfig() if max_per_track is None else MiningConfig(max_per_track=max_per_track)
    report = mine_descriptions(track_ids=track_ids, remine=remine, config=config)
    return {"report": report.as_dict(), "summary": descriptions_summary(track_ids)}


@shared_task(name="recommender.llm_text_run")
def llm_text_run_task(perspectives: list[str] | None = None, seed: int = 0) -> dict:
    """The LLM text job (recommender/services/llm_text.py): source, mine, retrain on the mix chosen on validation."""
    from recommender.services.llm_text import llm_text_run

    return llm_text_run(perspectives=perspectives, seed=seed)
