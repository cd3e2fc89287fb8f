import csv

import numpy as np
import pytest
import soundfile
from django.core.management import call_command

from recommender.models import Track


def write_tone(path, rate=16000, seconds=1.5, frequency=440.0, **kwargs):
    t = np.arange(int(rate * seconds)) / rate
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate, **kwargs)


@pytest.fixture
def catalog_dir(tmp_path):
    write_tone(tmp_path / "a.wav", frequency=220)
    write_tone(tmp_path / "b.flac", frequency=330)
    write_tone(tmp_path / "c.ogg", frequency=440, format="OGG", subtype="VORBIS")
    write_tone(tmp_path / "d.mp3", rate=44100, frequency=550, format="MP3", subtype="MPEG_LAYER_III")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    (tmp_path / "empty.flac").write_bytes(b"")
    with open(tmp_path / "meta.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "title", "composer", "collection", "label_style", "tempo"])
        writer.writeheader()
        writer.writerow({"path": "a.wav", "title": "Chorale A", "composer": "J. S. Bach",
                         "collection": "Chorales", "label_style": "chorale", "tempo": "72"})
    return tmp_path


@pytest.mark.django_db
def test_ingest_reads_every_format_and_skips_bad_files_by_name(catalog_dir, capsys):
    call_command("ingest_catalog", str(catalog_dir), metadata=str(catalog_dir / "meta.csv"))
    out, err = capsys.readouterr()
    assert Track.objects.count() == 4
    assert "corrupt.wav" in err and "empty.flac" in err
    assert "4 new" in out and "2 skipped" in out
    track = Track.objects.get(title="Chorale A")
    assert track.artist == "J. S. Bach" and track.album == "Chorales"
    assert track.labels == {"style": "chorale"} and track.metadata == {"tempo": "72"}
    assert track.sample_rate == 16000 and abs(track.duration_s - 1.5) < 1e-6
    mp3 = Track.objects.get(title="d")
    assert mp3.sample_rate == 44100 and mp3.duration_s > 1.0


@pytest.mark.django_db
def test_ingest_is_idempotent_on_rerun(catalog_dir, capsys):
    call_command("ingest_catalog", str(catalog_dir))
    first = set(Track.objects.values_list("checksum", flat=True))
    capsys.readouterr()
    call_command("ingest_catalog", str(catalog_dir))
    out, _ = capsys.readouterr()
    assert set(Track.objects.values_list("checksum", flat=True)) == first
    assert "0 new" in out and "4 unchanged" in out
