"""The catalog as a player sees it: track ids with the labels the taste model reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

UNKNOWN = "unknown"


@dataclass(frozen=True)
class CatalogTrack:
    """One track's labels that matter to a listener: style (dominant), ensemble/timbre, tempo."""

    id: int
    style: str = UNKNOWN
    ensemble: str = UNKNOWN
    tempo_bpm: float | None = None
    title: str = ""

    @classmethod
    def from_api(cls, row: Mapping) -> CatalogTrack:
        """Build from one ``GET /api/v1/tracks`` row; missing labels fall back to ``unknown``.

        The ensemble falls back to the sorted instrument list so that catalogs without an
        ``ensemble`` label still give the timbre signal.
        """
        labels = row.get("labels") or {}
        ensemble = labels.get("ensemble")
        if not ensemble and labels.get("instruments"):
            ensemble = "+".join(sorted(str(name) for name in labels["instruments"]))
        tempo = labels.get("tempo_bpm")
        try:
            tempo = float(tempo) if tempo is not None else None
        except (TypeError, ValueError):
            tempo = None
        return cls(
            id=int(row["id"]),
            style=str(labels.get("style") or UNKNOWN),
            ensemble=str(ensemble or UNKNOWN),
            tempo_bpm=tempo,
            title=str(row.get("title") or ""),
        )


@dataclass(frozen=True)
class Catalog:
    """The tracks plus the lookups the simulator needs (by id, by style)."""

    tracks: tuple[CatalogTrack, ...]
    by_id: dict[int, CatalogTrack] = field(init=False, repr=False, compare=False)
    by_style: dict[str, tuple[CatalogTrack, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.tracks:
            raise ValueError("the catalog is empty: the platform returned no tracks")
        ordered = tuple(sorted(self.tracks, key=lambda track: track.id))
        object.__setattr__(self, "tracks", ordered)
        object.__setattr__(self, "by_id", {track.id: track for track in ordered})
        groups: dict[str, list[CatalogTrack]] = {}
        for track in ordered:
            groups.setdefault(track.style, []).append(track)
        object.__setattr__(self, "by_style", {style: tuple(group) for style, group in sorted(groups.items())})

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping]) -> Catalog:
        return cls(tuple(CatalogTrack.from_api(row) for row in rows))

    @property
    def styles(self) -> tuple[str, ...]:
        return tuple(self.by_style)

    @property
    def ensembles(self) -> tuple[str, ...]:
        return tuple(sorted({track.ensemble for track in self.tracks}))

    @property
    def tempos(self) -> tuple[float, ...]:
        return tuple(track.tempo_bpm for track in self.tracks if track.tempo_bpm is not None)
