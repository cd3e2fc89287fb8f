"""Statistics core of the experiments: pure numpy/scipy/statsmodels over sufficient statistics, no Django.

Modules mirror gbstats: ``statistics`` (inputs), ``frequentist`` (delta-method and naive tests),
``sequential`` (always-valid p-values / confidence sequences), ``srm``, ``multiple`` (Holm),
``power`` (MDE, days to decision), ``bayesian`` (chance to win), ``report`` (comparisons, verdict).
"""

from experiments.stats.statistics import ProportionStatistic, RatioStatistic, SampleMeanStatistic

__all__ = ["ProportionStatistic", "RatioStatistic", "SampleMeanStatistic"]
