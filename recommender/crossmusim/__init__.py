"""CrossMuSim core: plain Python + numpy + torch, no Django imports.

Audio features, towers, losses, augmentation, training, evaluation metrics and
description sourcing/mining live here so that they can be tested and reused without
a database. The Django apps load data, call these functions and store the results.

Public API of the model core (for the Django shell, commands and bench scripts)
------------------------------------------------------------------------------
Features (``features``)::

    pool_patches(patches [n, D]) -> [2D]            # mean ‖ max over 3-s patches
    pool_many(list_of_patches) -> [N, 2D]
    pad_patches(list) -> ([N, P, D], mask [N, P]); pool_masked(padded, mask) -> [N, 2D]   (torch twins)
    (patch features are cached per audio checksum by recommender.services.embeddings.FeatureCache)

Model (``factory``), embedding (``inference``)::

    save_checkpoint(path, model) / load_model(path) -> CrossMuSimModel      # the one checkpoint format
    create_model_for_data(model_config, data) -> CrossMuSimModel   # input sizes and statistics from the data
    embed_audio(model, pool_many(patches)) -> [N, embed_dim] L2-normalised np.ndarray
    embed_text(model, ["a lively reel on fiddle", ...]) -> [N, embed_dim]

Training (``config``, ``data``, ``objectives``, ``validation``; the loop in ``train``)::

    data = TrainingData.from_texts(captions, scores, patches=list_of_patch_arrays)   # MiniLM-embeds captions
    # or TrainingData(patches=..., caption_embeddings=[[m_i, 384]...], caption_weights=[[m_i]...])
    # captions: textprep.training_captions(kept (text, score, perspective), instrument_words) per track
    config = TrainConfig(objective="text", seed=0, steps=600, checkpoint_path=".../run.pt", checkpoint_every=100)
    validator = retrieval_validator(val_data, EvalLabels(...))    # choices on validation only
    result = train_crossmusim(data, config, progress=lambda step, total, loss: ..., validator=validator)
    result.model (CrossMuSimModel, eval mode), result.losses, result.best_step, result.train_seconds

    Outside the core, only recommender.services.embedding_training imports ``train``
    (``crossmusim_fit``, ``crossmusim_train_config``: what bench/retrieval_quality.py trains with).
    objective="simclr" / "supervised" (needs TrainingData.labels) train the audio-only reference rows
    (``objectives.create_loss`` picks the objective); TrainConfig.model =
    CrossMuSimConfig(audio=AudioTowerConfig(kind="scratch_cnn")) with TrainingData.logmels
    (``logmel.log_mel_spectrogram``) trains the from-scratch CNN tower.

Baseline arm (``baselines``)::

    baseline_embeddings(pooled_features [N, 2D], mean=None, std=None) -> [N, 2D] L2-normalised

Evaluation (``evaluate``/``metrics``)::

    evaluate_embeddings(audio_emb, EvalLabels(style, ensemble, mode, work_id), text_emb=None, text_targets=None,
                        queries=None)
      -> {"style_p1", "style_p10", "style_map", "style_ndcg10", "xinst_style_p10", "xinst_style_map",
          "instrument_p10", "mode_p10", "mode_p10_within_style", ["t2a_r1", "t2a_r5", "t2a_r10"]}

Caption text (``textprep``, the one caption pipeline)::

    training_captions(descriptions, instrument_words, drop_perspectives=..., mode_words=...) -> (texts, scores)
    label_free_captions(texts, scores, label_words) -> (texts, scores)        # the label-free ablation
    strip_label_words(text, label_values) -> text without style / tune-type / collection / composer words
    strip_mode_words(text, moods=True) -> text without key / mode names (and mode-chosen mood adjectives)
"""
