"""Experiments, variants, assignments and events (filled in by the serving issue)."""
