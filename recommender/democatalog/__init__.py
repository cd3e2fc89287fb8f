"""The demo catalog: real scores from the music21 corpus rendered to labelled audio.

Plain Python with no Django imports: styles and their sources (``styles``), raw ABC
headers (``abc``), candidate works (``candidates``), parsing to note events (``parse``),
work grouping (``dedup``), tempo/instrument/excerpt choices (``plan``), FluidSynth
rendering (``render``), splits (``splits``) and the build that ties them (``build``).
"""

from .build import BuildConfig, BuildReport, BuiltTrack, build_demo_catalog, summary_rows

__all__ = ["BuildConfig", "BuildReport", "BuiltTrack", "build_demo_catalog", "summary_rows"]
