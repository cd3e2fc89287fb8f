"""Simulated music players: a latent-taste click model and an HTTP driver for the public API.

No Django here: the simulator is a *client* of the platform and sees only what a player app
would see (``/api/v1/tracks``, ``/api/v1/recommendations``, ``/api/v1/events``).
"""

from .catalog import Catalog, CatalogTrack
from .client import ApiError, PlatformClient, Recommendation, RecommendedItem, add_api_key_arguments, resolve_api_key
from .runner import DropPolicy, SimulationConfig, SimulationSummary, run_simulation
from .taste import (
    TasteModel,
    UserProfile,
    click_probability,
    listened_seconds,
    make_population,
    position_bias,
    relevance,
    taste_fit,
)

__all__ = [
    "ApiError",
    "Catalog",
    "CatalogTrack",
    "DropPolicy",
    "PlatformClient",
    "Recommendation",
    "RecommendedItem",
    "SimulationConfig",
    "SimulationSummary",
    "TasteModel",
    "UserProfile",
    "click_probability",
    "listened_seconds",
    "make_population",
    "position_bias",
    "relevance",
    "taste_fit",
    "add_api_key_arguments",
    "resolve_api_key",
    "run_simulation",
]
