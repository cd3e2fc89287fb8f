"""CrossMuSim core: plain Python + numpy + torch, no Django imports.

Audio features, towers, losses, augmentation, training, evaluation metrics and
description sourcing/mining live here so that they can be tested and reused without
a database. The Django apps load data, call these functions and store the results.
"""
