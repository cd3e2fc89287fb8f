"""The contrastive losses on hand-built tensors."""

import math

import torch
import torch.nn.functional as F  # noqa: N812

from recommender.crossmusim.loss import CrossModalInfoNCE, SimCLRLoss, duplicate_caption_mask
from recommender.crossmusim.towers import CrossMuSimConfig, create_model


def _pairs(n=8, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    audio = F.normalize(torch.randn(n, dim, generator=gen), dim=-1)
    text = F.normalize(audio + 0.1 * torch.randn(n, dim, generator=gen), dim=-1)
    return audio, text


def test_aligned_pairs_give_lower_loss_than_shuffled():
    audio, text = _pairs()
    loss = CrossModalInfoNCE()
    scale = torch.tensor(1 / 0.07)
    aligned = loss(audio, text, scale)
    shuffled = loss(audio, text[torch.roll(torch.arange(8), 1)], scale)
    assert aligned < 0.5
    assert shuffled > aligned + 3


def test_duplicate_captions_are_not_negatives():
    audio, text = _pairs()
    # track 1's caption is the same sentence as track 0's: without the mask it is a hard negative
    raw = torch.randn(8, 384)
    raw[1] = raw[0]
    text, audio = text.clone(), audio.clone()
    text[1], audio[1] = text[0], audio[0]  # two renditions described by one sentence
    mask = duplicate_caption_mask(raw, threshold=0.95)
    assert mask[0, 1] and mask[1, 0] and mask.sum() == 2 and not mask.diagonal().any()
    loss = CrossModalInfoNCE()
    scale = torch.tensor(1 / 0.07)
    unmasked = loss(audio, text, scale)
    masked = loss(audio, text, scale, duplicate_mask=mask)
    assert unmasked > 0.1 and masked < unmasked / 10  # the duplicate no longer competes with the positive
    # with the duplicates masked the loss equals the loss of a batch where they do not collide
    keep = torch.tensor([0, 2, 3, 4, 5, 6, 7])
    assert abs(masked - loss(audio[keep], text[keep], scale)) < 0.05


def test_duplicates_as_positives_reward_matching_either_duplicate():
    audio, text = _pairs()
    text = text.clone()
    text[1] = audio[0]  # track 1's caption fits track 0's audio best
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = True
    scale = torch.tensor(1 / 0.07)
    masked = CrossModalInfoNCE("mask")(audio, text, scale, duplicate_mask=mask)
    positive = CrossModalInfoNCE("positive")(audio, text, scale, duplicate_mask=mask)
    plain = CrossModalInfoNCE("positive")(audio, text, scale)
    assert positive < plain and torch.isfinite(masked) and torch.isfinite(positive)
    # without duplicates both modes are the plain loss
    assert torch.isclose(CrossModalInfoNCE("positive")(audio, text, scale, duplicate_mask=torch.zeros_like(mask)),
                         plain)


def test_template_groups_mark_duplicates_whatever_the_cosine():
    raw = torch.eye(4, 384)
    mask = duplicate_caption_mask(raw, groups=torch.tensor([3, 3, -1, -1]))
    assert mask.tolist() == [[False, True, False, False], [True, False, False, False],
                             [False] * 4, [False] * 4]


def test_weights_move_the_loss_towards_the_heavy_pairs():
    audio, text = _pairs()
    text = text.clone()
    text[0] = -audio[0]  # one bad pair
    loss = CrossModalInfoNCE()
    scale = torch.tensor(1 / 0.07)
    weights = torch.ones(8)
    weights[0] = 0.01
    assert loss(audio, text, scale, weights=weights) < loss(audio, text, scale) - 0.5
    out = loss(audio, text, scale, output_dict=True)
    assert set(out) == {"contrastive_loss"}


def test_simclr_loss_prefers_matching_views():
    audio, other = _pairs()
    simclr = SimCLRLoss(temperature=0.1)
    assert simclr(audio, other) < simclr(audio, other[torch.roll(torch.arange(8), 3)]) - 2


def test_model_logit_scale_starts_at_log_inverse_temperature():
    config = CrossMuSimConfig()
    config.audio.input_dim = 10
    model = create_model(config, embed_dim=32)
    assert math.isclose(model.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    out = model(torch.randn(3, 10), torch.randn(3, 384))
    assert out["audio_features"].shape == (3, 32) and out["text_features"].shape == (3, 32)
    assert torch.allclose(out["audio_features"].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert model.encode_text(torch.randn(2, 384), normalize=False).norm(dim=-1).ne(1).all()
