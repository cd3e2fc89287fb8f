import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.conf import settings
from django.core.management import CommandError, call_command

from recommender.models import Track
from recommender.services.catalog import ingest_catalog


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


# ---------------------------------------------------------------- hardening: no data lost, clear failures


def write_csv(path, fieldnames, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.django_db
def test_rerun_without_metadata_keeps_every_metadata_field(catalog_dir, capsys):
    call_command("ingest_catalog", str(catalog_dir), metadata=str(catalog_dir / "meta.csv"))
    call_command("ingest_catalog", str(catalog_dir))
    out, _ = capsys.readouterr()
    track = Track.objects.get(audio_path=str((catalog_dir / "a.wav").resolve()))
    assert (track.title, track.artist, track.album) == ("Chorale A", "J. S. Bach", "Chorales")
    assert track.labels == {"style": "chorale"} and track.metadata == {"tempo": "72"}
    assert "0 new, 0 updated, 4 unchanged" in out


@pytest.mark.django_db
def test_update_sets_only_the_columns_the_file_provides_and_empty_cells_keep_values(catalog_dir, capsys):
    call_command("ingest_catalog", str(catalog_dir), metadata=str(catalog_dir / "meta.csv"))
    # A second file that knows only the meter, leaves the title cell empty and adds a note.
    write_csv(catalog_dir / "meter.csv", ["path", "title", "label_meter", "note"],
              [{"path": "a.wav", "title": "", "label_meter": "4/4", "note": "checked"}])
    call_command("ingest_catalog", str(catalog_dir), metadata=str(catalog_dir / "meter.csv"))
    track = Track.objects.get(audio_path=str((catalog_dir / "a.wav").resolve()))
    assert (track.title, track.artist, track.album) == ("Chorale A", "J. S. Bach", "Chorales")
    assert track.labels == {"style": "chorale", "meter": "4/4"}
    assert track.metadata == {"tempo": "72", "note": "checked"}
    # JSON: a present key overrides, null and "" keep, a labels object merges key by key.
    (catalog_dir / "meta.json").write_text(json.dumps([
        {"path": "a.wav", "title": "Chorale A (rev.)", "artist": None, "album": "",
         "labels": {"style": "hymn", "mode": None}},
    ]))
    call_command("ingest_catalog", str(catalog_dir), metadata=str(catalog_dir / "meta.json"))
    out, _ = capsys.readouterr()
    track.refresh_from_db()
    assert (track.title, track.artist, track.album) == ("Chorale A (rev.)", "J. S. Bach", "Chorales")
    assert track.labels == {"style": "hymn", "meter": "4/4"}
    assert track.metadata == {"tempo": "72", "note": "checked"}
    assert "1 updated" in out


@pytest.fixture
def outside_dir(tmp_path_factory):
    """A folder that is not under the catalog folder, holding audio a symlink could point at."""
    folder = tmp_path_factory.mktemp("outside")
    write_tone(folder / "secret.wav", frequency=990)
    return folder


@pytest.mark.django_db
def test_symlinks_out_of_the_catalog_are_refused_and_the_rest_is_ingested(catalog_dir, outside_dir, capsys):
    (catalog_dir / "sub").mkdir()
    (catalog_dir / "sub" / "leak.wav").symlink_to(outside_dir / "secret.wav")
    (catalog_dir / "inside.wav").symlink_to(catalog_dir / "b.flac")  # stays inside: allowed
    write_csv(catalog_dir / "meta.csv", ["path", "title"], [
        {"path": "sub/leak.wav", "title": "Leak"},
        {"path": "../" + outside_dir.name + "/secret.wav", "title": "Named outside"},
        {"path": str(outside_dir / "secret.wav"), "title": "Absolute outside"},
        {"path": "a.wav", "title": "Chorale A"},
    ])
    call_command("ingest_catalog", str(catalog_dir), metadata=str(catalog_dir / "meta.csv"))
    out, err = capsys.readouterr()
    secret = str((outside_dir / "secret.wav").resolve())
    assert not Track.objects.filter(audio_path=secret).exists()
    assert not Track.objects.filter(title__in=["Leak", "Named outside", "Absolute outside"]).exists()
    assert Track.objects.filter(title="Chorale A").exists() and Track.objects.count() == 4
    assert f"skipped {Path('sub/leak.wav')}: refused: resolves to {secret}, outside the catalog folder" in err
    assert "4 new" in out and "3 skipped" in out and "3 metadata rows unmatched" in out
    assert err.count("outside the catalog folder") >= 4  # the file, and the three rows that name it


@pytest.mark.django_db
def test_a_symlinked_catalog_folder_is_resolved_not_refused(catalog_dir, tmp_path_factory):
    link = tmp_path_factory.mktemp("links") / "catalog"
    link.symlink_to(catalog_dir, target_is_directory=True)
    report = ingest_catalog(link, catalog_dir / "meta.csv")
    assert report.created == 4 and [name for name, _ in report.failed] == ["corrupt.wav", "empty.flac"]
    assert report.unmatched == []


@pytest.mark.django_db
def test_unmatched_metadata_rows_are_reported_by_the_service_and_the_command(catalog_dir, capsys):
    names = ["a.wav", "missing.wav", "corrupt.wav", "sub/typo.flac", *(f"gone{i}.wav" for i in range(5))]
    write_csv(catalog_dir / "meta.csv", ["path", "title"], [{"path": name, "title": name} for name in names])
    report = ingest_catalog(catalog_dir, catalog_dir / "meta.csv")
    unmatched = dict(report.unmatched)
    assert list(unmatched) == names[1:]
    assert unmatched["missing.wav"] == "no such audio file in the catalog"
    assert unmatched["corrupt.wav"].startswith("the file was skipped")
    call_command("ingest_catalog", str(catalog_dir), metadata=str(catalog_dir / "meta.csv"))
    out, err = capsys.readouterr()
    assert "8 metadata rows unmatched" in out
    assert "8 metadata rows matched no ingested file: missing.wav (no such audio file in the catalog)" in err
    assert "sub/typo.flac" in err and "and 3 more" in err and "gone4.wav" not in err


BAD_METADATA = {
    "dict_of_lists.json": ({"tracks": [{"path": "a.wav"}]}, "the value of 'tracks' is a list, not an object"),
    "list_of_strings.json": (["a.wav", "b.flac"], "row 1 is a string, not an object"),
    "row_without_path.json": ([{"path": "a.wav"}, {"title": "x"}], "row 2 has no 'path' (or 'file')"),
    "non_object_row.json": ([{"path": "a.wav"}, 7], "row 2 is a number, not an object"),
    "path_not_text.json": ([{"path": 12}], "row 1: 'path' is a number, must be a string"),
    "labels_not_object.json": ([{"path": "a.wav", "labels": ["chorale"]}], "row 1: 'labels' is a list"),
    "title_is_object.json": ([{"path": "a.wav", "title": {"en": "x"}}], "row 1: 'title' is an object"),
    "title_too_long.json": ([{"path": "a.wav", "title": "x" * 501}], "row 1: 'title' is 501 characters"),
    "top_level_string.json": ("a.wav", "the top level is a string"),
    "duplicate_rows.json": ([{"path": "a.wav"}, {"path": "./a.wav"}], "row 1 and row 2 both name 'a.wav'"),
    "not_json.json": ("{broken", "not valid JSON"),
    "no_path_column.csv": ("title,artist\nx,y\n", "no 'path' (or 'file') column; the header has: 'title', 'artist'"),
    "extra_cells.csv": ("path,title\na.wav,x,surplus\n", "line 2 has 3 cells but the header has 2"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(BAD_METADATA))
def test_malformed_metadata_fails_with_a_clear_error_and_ingests_nothing(catalog_dir, name):
    content, message = BAD_METADATA[name]
    path = catalog_dir / name
    path.write_text(content if name.endswith(".csv") or content == "{broken" else json.dumps(content))
    with pytest.raises(CommandError) as failure:
        call_command("ingest_catalog", str(catalog_dir), metadata=str(path))
    assert message in str(failure.value) and str(path) in str(failure.value)
    assert "nothing was ingested" in str(failure.value)
    assert Track.objects.count() == 0


@pytest.mark.django_db
def test_malformed_metadata_exits_non_zero_from_the_command_line(catalog_dir):
    (catalog_dir / "bad.json").write_text(json.dumps({"tracks": ["a.wav"]}))
    env = {**os.environ, "DJANGO_DB_NAME": settings.DATABASES["default"]["NAME"]}
    result = subprocess.run(
        [sys.executable, "manage.py", "ingest_catalog", str(catalog_dir), "--metadata", str(catalog_dir / "bad.json")],
        cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "CommandError: invalid metadata, nothing was ingested" in result.stderr
    assert "the value of 'tracks' is a list" in result.stderr and "Traceback" not in result.stderr
