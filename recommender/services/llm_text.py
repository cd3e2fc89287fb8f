"""The LLM text job: source LLM descriptions for the whole catalog, mine them, retrain the crossmusim arm.

The shipped local model writes about one track a second on a free core (docs/model.md, "The local
LLM"), so `make run` does not wait for it: ``prepare_demo`` trains the arm on the text it has and
queues this job on the Celery worker (task ``recommender.llm_text_run``). It is resumable (the
sourcing skips units that succeeded before, answers are cached) and runs one at a time (a lock
file). When the sourcing is done it mines, trains one CrossMuSim model per text mix (templates,
LLM, both) and keeps the mix with the best validation score (``crossmusim_train(text_mix="auto")``);
if that mix has LLM text, the new model is indexed and serves the crossmusim arm.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings

from recommender.crossmusim.descriptions import SourceName
from recommender.selectors import tracks_for_ids
from recommender.services.descriptions import descriptions_summary, mine_descriptions, source_descriptions
from recommender.services.embedding_runtime import backbone_extractor
from recommender.services.embedding_training import crossmusim_train
from recommender.services.embeddings import DEFAULT_BACKBONE, catalog_index, embedding_model_activate

log = logging.getLogger(__name__)
ARM = "crossmusim"


def llm_text_run(*, perspectives: Sequence[str] | str | None = None, seed: int = 0, steps: int | None = None,
                 progress: bool = True, backbone: str = DEFAULT_BACKBONE) -> dict:
    """Run the job (see the module docstring); returns what it did. A second concurrent call returns at once."""
    lock_path = Path(settings.VAR_DIR) / "llm" / "text-job.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"status": "already running"}
        report = source_descriptions(sources=[SourceName.LLM], progress=progress, llm_perspectives=perspectives)
        log.info("llm sourcing: %s", report.as_dict())
        mining = mine_descriptions(progress=progress)
        summary = {row["source"]: row for row in descriptions_summary()}
        out = {"status": "sourced", "sourcing": report.as_dict(), "mining": mining.as_dict(),
               "llm": summary.get(SourceName.LLM)}
        if not summary.get(SourceName.LLM, {}).get("kept"):
            out["status"] = "no kept LLM text"
            return out
        run = crossmusim_train(seed=seed, steps=steps, text_mix="auto", backbone=backbone,
                               extractor_factory=lambda: backbone_extractor(backbone))
        model = run.model
        out.update({"model": str(model), "text_mix": model.config.get("text_mix"),
                    "text_mix_val": model.metrics.get("text_mix_val")})
        if model.config.get("text_mix") in ("llm", "both"):
            catalog_index(model=model, tracks=list(tracks_for_ids()),
                          extractor_factory=lambda: backbone_extractor(backbone))
            embedding_model_activate(model=model, arm=ARM)
            out["status"] = f"{model} serves the {ARM} arm"
        else:
            out["status"] = f"templates won on validation; {model} registered, the arm keeps its model"
        return out
