"""Chance to win under a flat prior and the normal likelihood."""

import numpy as np
import pytest

from experiments.stats.bayesian import chance_to_win


def test_chance_to_win():
    assert chance_to_win(0.0, 0.01) == pytest.approx(0.5)
    # effect = 1.96 standard errors -> 0.975
    assert chance_to_win(0.196, 0.01) == pytest.approx(0.9750021048517795, abs=1e-9)
    np.testing.assert_allclose(chance_to_win(np.array([-0.1, 0.1]), 0.01), [0.15865525, 0.84134475], atol=1e-8)
