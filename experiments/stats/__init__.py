"""Statistics core of the experiments: pure numpy/scipy/statsmodels over sufficient statistics, no Django.

One entry point, ``report.analyse`` (and ``report.summarise`` for the experiments list): the
aggregate tables' rows in, the whole report out. Modules, one job each: ``aggregates`` (the
inputs: rows to sufficient statistics), ``statistics`` (the sufficient statistics), ``frequentist``
(delta-method and naive tests), ``sequential`` (always-valid p-values / confidence sequences),
``srm``, ``multiple`` (Holm), ``power`` (MDE, days to decision), ``bayesian`` (chance to win),
``comparisons`` (every test of every treatment), ``verdict`` (the decision and its words),
``results`` (the report's types, JSON and CSV), ``report`` (the entry point). Issue 24: ``metrics``
(the registry of ratio metrics, per-user columns, winsorisation), ``cuped`` (CUPED for ratio metrics),
``group_sequential`` (Lan-DeMets boundaries), ``decision`` (the risk-aware ship rule and its words),
``metric_analysis`` (all of them for one experiment, called by ``report.analyse``).
"""

from experiments.stats.statistics import ProportionStatistic, RatioStatistic, SampleMeanStatistic

__all__ = ["ProportionStatistic", "RatioStatistic", "SampleMeanStatistic"]
