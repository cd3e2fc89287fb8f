"""Contrastive losses as their own modules, so another loss can be summed in without touching training.

:class:`CrossModalInfoNCE` is the CLIP loss (symmetric InfoNCE / NT-Xent between audio and
text) with two changes for mined, partly templated descriptions:

* captions that are identical or near-identical to another caption in the batch (cosine
  of their frozen sentence embeddings >= a threshold, or the same template id) are *not*
  negatives: their logits are masked out, since pushing apart two tracks described by the
  same sentence would teach the model to contradict the text;
* each pair carries a weight (the description's mining score), so noisy descriptions pull less.

:class:`SimCLRLoss` is NT-Xent between two augmented views of the same audio (reference rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn


def duplicate_caption_mask(raw_text_embeddings: torch.Tensor, threshold: float = 0.95,
                           groups: torch.Tensor | None = None) -> torch.Tensor:
    """[B, B] bool, True where caption j duplicates caption i (i != j): that pair is no negative.

    ``raw_text_embeddings`` are the frozen sentence embeddings (not the projections), so the
    mask does not move while the model trains. ``groups`` (e.g. a template id per caption,
    -1 for none) marks captions as duplicates whatever their cosine.
    """
    normed = F.normalize(raw_text_embeddings.float(), dim=-1)
    mask = normed @ normed.T >= threshold
    if groups is not None:
        groups = torch.as_tensor(groups)
        mask |= (groups[:, None] == groups[None, :]) & (groups[:, None] >= 0)
    mask.fill_diagonal_(False)
    return mask


class CrossModalInfoNCE(nn.Module):
    """Symmetric InfoNCE between L2-normalised audio and text features, with masking and weights.

    ``duplicates="mask"`` drops duplicate-caption pairs from the negatives; ``"positive"``
    counts them as further positives (multi-positive InfoNCE, log of the summed positive
    probability), which pulls tracks described alike together instead of merely not
    pushing them apart.
    """

    def __init__(self, duplicates: str = "mask"):
        super().__init__()
        if duplicates not in ("mask", "positive"):
            raise ValueError(f"duplicates must be 'mask' or 'positive', not {duplicates!r}")
        self.duplicates = duplicates

    def forward(self, audio_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                duplicate_mask: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                output_dict: bool = False):
        logits = logit_scale * audio_features @ text_features.T
        labels = torch.arange(logits.shape[0], device=logits.device)
        if duplicate_mask is not None and self.duplicates == "positive":
            positives = duplicate_mask | torch.eye(len(labels), dtype=torch.bool, device=logits.device)
            per_pair = 0.5 * (_multi_positive_nll(logits, positives) + _multi_positive_nll(logits.T, positives.T))
        else:
            if duplicate_mask is not None:
                logits = logits.masked_fill(duplicate_mask, float("-inf"))
            per_pair = 0.5 * (F.cross_entropy(logits, labels, reduction="none")
                              + F.cross_entropy(logits.T, labels, reduction="none"))
        if weights is None:
            loss = per_pair.mean()
        else:
            weights = weights.to(per_pair.dtype)
            loss = (per_pair * weights).sum() / weights.sum().clamp_min(1e-8)
        return {"contrastive_loss": loss} if output_dict else loss


def _multi_positive_nll(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """-log(sum of softmax probability over each row's positives)."""
    return torch.logsumexp(logits, dim=1) - torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)


class SimCLRLoss(nn.Module):
    """NT-Xent over 2B views: view i's positive is its twin, the other 2B-2 views are negatives."""

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor, output_dict: bool = False):
        features = F.normalize(torch.cat([view_a, view_b]), dim=-1)
        n = view_a.shape[0]
        logits = features @ features.T / self.temperature
        logits.fill_diagonal_(float("-inf"))
        labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(logits.device)
        loss = F.cross_entropy(logits, labels)
        return {"simclr_loss": loss} if output_dict else loss
