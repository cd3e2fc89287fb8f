from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.services.embedding_runtime import backbone_extractor, set_torch_threads
from recommender.services.embedding_training import TrainingInputError, crossmusim_train, describe_metrics
from recommender.services.embeddings import DEFAULT_BACKBONE


class Command(BaseCommand):
    help = ("Train CrossMuSim (pretrained audio tower guided by the kept text descriptions) on a split's train "
            "part, choose the step on its validation part, score the test part and register a new model version.")

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int,
                            help="torch CPU threads (default: torch's choice; 1 is faster on a busy shared machine)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--steps", type=int, help="Optimisation steps (default: the core's TrainConfig)")
        parser.add_argument("--resume", action="store_true",
                            help="Continue the interrupted run of this name/split/seed from its last checkpoint")
        parser.add_argument("--split", default="default")
        parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
        parser.add_argument("--name", default="crossmusim")
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--lr", type=float)
        parser.add_argument("--embed-dim", type=int)
        parser.add_argument("--timbre-views", type=int, dest="audio_views",
                            help="Timbre views per training track to pool from (computed and cached on first use; "
                                 "default: the core's, 0). For catalogs whose instruments differ from the training "
                                 "tracks': docs/model.md#timbre-views-audio-side-augmentation-2026-12-05")
        parser.add_argument("--view-probability", type=float,
                            help="How often a training track is pooled from one of its views (default: the core's)")
        parser.add_argument("--text-mix", default="auto", choices=["auto", "templates", "llm", "both"],
                            help="Which sources' kept descriptions to train on; auto: one model per mix that covers "
                                 "half the train tracks, the best on validation kept (default)")

    def handle(self, *args, seed, steps, resume, split, backbone, name, batch_size, lr, embed_dim, threads=None,
               text_mix="auto", audio_views=None, view_probability=None, **options):
        set_torch_threads(threads)
        if audio_views is not None and audio_views < 0 or view_probability is not None and \
                not 0 <= view_probability <= 1:
            raise CommandError("--timbre-views must be 0 or more and --view-probability within [0, 1]")
        overrides = {key: value for key, value in
                     {"batch_size": batch_size, "lr": lr, "embed_dim": embed_dim, "audio_views": audio_views,
                      "view_probability": view_probability}.items() if value is not None}
        if audio_views and view_probability is None:
            overrides["view_probability"] = 0.5  # the rate chosen on validation with two views
        bar = None

        def on_step(step: int, total: int, loss: float) -> None:
            nonlocal bar
            if bar is not None and step == 1:  # the next text mix's run (--text-mix auto)
                bar.close()
                bar = None
            if bar is None:
                bar = tqdm(total=total, initial=step - 1, desc=f"train {name} seed {seed}", unit="step", disable=None)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

        try:
            run = crossmusim_train(
                seed=seed, steps=steps, resume=resume, split=split, backbone=backbone, name=name,
                overrides=overrides, extractor_factory=lambda: backbone_extractor(backbone), on_step=on_step,
                progress=lambda items: tqdm(items, desc=f"features {backbone}", unit="track", disable=None),
                text_mix=text_mix,
            )
        except (TrainingInputError, ValueError) as error:
            raise CommandError(str(error)) from error
        finally:
            if bar is not None:
                bar.close()
        for path, reason in run.extraction.failed:
            self.stderr.write(f"skipped {path}: {reason}")
        failed_views = run.views.failed if run.views else []
        if failed_views:  # one line, not one per track: a catalog without audio files has no view at all
            path, reason = failed_views[0]
            self.stderr.write(f"{len(failed_views)} timbre views not made (trained on the tracks' own features "
                              f"there); first: {path}: {reason}")
        model = run.model
        resumed = f", resumed from step {run.resumed_from_step}" if run.resumed_from_step else ""
        self.stdout.write(
            f"registered {model} (id {model.pk}, dim {model.dim}) after {model.metrics['steps_done']} steps{resumed}, "
            f"loss {model.metrics['loss_first']:.3f} -> {model.metrics['loss_last']:.3f}; "
            f"test: {describe_metrics(model.metrics)}"
        )
        scores = ", ".join(f"{mix} {score:.3f}" for mix, score in model.metrics.get("text_mix_val", {}).items()
                           if score is not None)
        self.stdout.write(f"text mix: {model.config.get('text_mix')} (validation x-inst style P@10: {scores})")
        self.stdout.write(f"checkpoint {model.checkpoint_path}")
        self.stdout.write(f"next: manage.py index_embeddings {model.pk} --activate-arm crossmusim")
