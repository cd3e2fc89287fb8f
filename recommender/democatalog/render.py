"""Render note events to 16 kHz mono audio through a General MIDI SoundFont with FluidSynth.

One ``Synthesizer`` per worker process loads the SoundFont once (FluidR3_GM is 148 MB).
Reverb and chorus are off: they keep state from one track to the next, and a rebuild
must give the same bytes (the catalog is keyed by file checksum). Between tracks every
voice is silenced and the synth reset, so no tail bleeds into the next file.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from .plan import RenderJob

SAMPLE_RATE = 16_000
DEFAULT_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
TARGET_RMS = 0.1  # -20 dBFS
PEAK_LIMIT = 0.98
FADE_S = 0.5


class RenderError(Exception):
    """The track cannot be rendered (silent output, synthesiser error); the message says why."""


class SoundFontMissingError(RuntimeError):
    """No SoundFont: install Debian's fluid-soundfont-gm or set SOUNDFONT=path.sf2."""


def find_soundfont(*preferred: str | None) -> str:
    """The first of ``preferred`` that is a file (the platform passes --soundfont, then its SOUNDFONT setting),
    else Debian's. The caller names the candidates: this plain-Python module reads no environment."""
    for candidate in (*preferred, *DEFAULT_SOUNDFONTS):
        if candidate and Path(candidate).is_file():
            return str(Path(candidate).resolve())
    raise SoundFontMissingError(
        "no General MIDI SoundFont found: apt-get install -y fluid-soundfont-gm libfluidsynth3, "
        "or set SOUNDFONT=/path/to/file.sf2"
    )


class Synthesizer:
    def __init__(self, soundfont: str, sample_rate: int = SAMPLE_RATE) -> None:
        import fluidsynth  # needs Debian's libfluidsynth3

        self.sample_rate = sample_rate
        self.synth = fluidsynth.Synth(
            gain=0.5, samplerate=sample_rate,
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1},
        )
        self._frames = 0
        self.sfid = self.synth.sfload(soundfont)
        if self.sfid < 0:
            raise SoundFontMissingError(f"FluidSynth cannot load the SoundFont {soundfont}")
        # pyfluidsynth's get_samples() writes 16-bit with dither whose state carries over between
        # calls, so the same notes give different bytes; float output has no dither.
        self._write_float = fluidsynth._fl.fluid_synth_write_float
        self._write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int]

    def samples(self, frames: int) -> np.ndarray:
        """``frames`` stereo frames, interleaved float32."""
        self._frames += frames
        buffer = np.zeros(2 * frames, dtype=np.float32)
        address = buffer.ctypes.data
        self._write_float(self.synth.synth, frames, address, 0, 2, address + 4, 0, 2)
        return buffer

    def silence(self) -> None:
        """Kill every voice, reset controllers and programs, and realign to a block boundary."""
        for channel in range(16):
            self.synth.all_sounds_off(channel)
        self.samples(64)  # the kill is applied at the next rendered block
        self.synth.system_reset()
        for _ in range(100):
            if self.synth.get_active_voice_count() == 0:
                break
            self.samples(64)
        # FluidSynth computes 64-frame blocks and keeps the rest for the next call: start every
        # track on a block boundary, or its note timings (and bytes) depend on earlier tracks.
        self.samples(64 + (-self._frames) % 64)

    def render(self, job: RenderJob) -> np.ndarray:
        """Play the job's events and return float32 mono samples of exactly ``duration_s``."""
        self.silence()
        for channel, program in job.programs.items():
            self.synth.program_select(channel, self.sfid, 0, program)
        total = int(round(job.duration_s * self.sample_rate))
        events = [(float(t), 1, int(c), int(p), int(v)) for t, c, p, v in
                  zip(job.onsets_s, job.channels, job.pitches, job.velocities, strict=True)]
        events += [(float(t), 0, int(c), int(p), 0) for t, c, p in
                   zip(job.ends_s, job.channels, job.pitches, strict=True)]
        events.sort()  # offs before ons at the same instant, so a repeated note re-strikes
        chunks, position = [], 0
        for time_s, kind, channel, pitch, velocity in events:
            frame = min(int(round(time_s * self.sample_rate)), total)
            if frame > position:
                chunks.append(self.samples(frame - position))
                position = frame
            if kind:
                self.synth.noteon(channel, pitch, velocity)
            else:
                self.synth.noteoff(channel, pitch)
        if total > position:
            chunks.append(self.samples(total - position))
        self.silence()
        stereo = np.concatenate(chunks)
        return (stereo[0::2] + stereo[1::2]) * np.float32(0.5)


def finish(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Fade the cut end, reject silence, normalise loudness to -20 dBFS RMS (peaks kept below 0 dBFS)."""
    audio = audio.astype(np.float32).copy()
    fade = min(len(audio), int(FADE_S * sample_rate))
    if fade:
        audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    rms = float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0
    frame = sample_rate // 10
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    sounding = float(np.mean(np.sqrt(np.mean(frames**2, axis=1)) > 1e-3)) if len(frames) else 0.0
    if rms < 1e-4 or sounding < 0.5:
        raise RenderError(f"silent render (rms {rms:.1e}, {sounding:.0%} of frames sound)")
    gain = min(TARGET_RMS / rms, PEAK_LIMIT / float(np.max(np.abs(audio))))
    return (audio * gain).astype(np.float32)


def write_wav(path: str, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    import soundfile

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    soundfile.write(str(partial), audio, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(partial, target)
