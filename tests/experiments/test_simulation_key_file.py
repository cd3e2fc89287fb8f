"""No secret on a command line: simulate_players and bench/proofs.py read the API key from a file.

``--api-key KEY`` put the key into /proc/<pid>/cmdline, readable by every local user through
``ps``; the Makefile did exactly that. Now it passes ``--api-key-file var/player_api_key``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from abplatform.apikeys.models import ApiKey
from abplatform.apikeys.services import api_key_create
from experiments.simulation import resolve_api_key
from tests.experiments.simulation_fixtures import arm_models, label_catalog, running_experiment

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_simulate_players_plays_with_the_key_from_a_file(live_server, tmp_path):
    tracks = label_catalog(count=24, prefix="keyfile")
    timbre, style = arm_models(tracks)
    running_experiment("key file", control=timbre, treatment=style)
    _, key = api_key_create(name="simulator key file test")
    key_file = tmp_path / "player_api_key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    out = tmp_path / "summary.json"
    call_command("simulate_players", "--api-key-file", str(key_file), "--base-url", live_server.url,
                 "--users", "5", "--max-requests", "8", "--rate", "50", "--duration", "20", "--workers", "2",
                 "--no-progress", "--summary-json", str(out), stdout=open("/dev/null", "w"))  # noqa: SIM115
    summary = json.loads(out.read_text())
    assert summary["requests"] == 8 and summary["request_errors"] == 0, summary


def test_a_missing_or_empty_key_file_is_a_clear_error(tmp_path, settings):
    settings.PLAYER_API_KEY = settings.PLAYER_API_KEY_FILE = ""
    with pytest.raises(CommandError, match="cannot read the API key file"):
        call_command("simulate_players", "--api-key-file", str(tmp_path / "nope"), "--no-progress")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(CommandError, match="is empty"):
        call_command("simulate_players", "--api-key-file", str(tmp_path / "empty"), "--no-progress")
    with pytest.raises(CommandError, match="an API key is needed"):
        call_command("simulate_players", "--no-progress")
    # With no option the command falls back on the PLAYER_API_KEY_FILE setting (from the environment).
    settings.PLAYER_API_KEY_FILE = str(tmp_path / "nope")
    with pytest.raises(CommandError, match="cannot read the API key file"):
        call_command("simulate_players", "--no-progress")


def test_where_the_key_comes_from(tmp_path):
    """The simulation package reads no environment: the caller passes its PLAYER_API_KEY(_FILE) settings."""
    assert resolve_api_key() == ""
    (tmp_path / "k").write_text("  abc.def  \nignored\n")
    assert resolve_api_key(default_key_file=tmp_path / "k") == "abc.def"
    # the key itself beats the file it names
    assert resolve_api_key(default_key=" from.settings ", default_key_file=tmp_path / "k") == "from.settings"
    assert resolve_api_key(key_file=tmp_path / "k", default_key="from.settings") == "abc.def"  # a given file wins
    assert resolve_api_key("given.key", tmp_path / "k") == "given.key"


def test_the_makefile_puts_no_key_on_a_command_line():
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"--api-key[ =]", makefile), "a key on the command line shows in ps"
    assert "$(cat var/player_api_key)" not in makefile.replace("$$", "$")
    assert makefile.count("--api-key-file var/player_api_key") >= 3  # both simulator runs and the proofs


@pytest.mark.django_db
def test_proofs_reads_its_key_file_before_creating_anything(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_proofs", ROOT / "bench" / "proofs.py")
    proofs = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_proofs", proofs)  # its dataclasses look their module up
    spec.loader.exec_module(proofs)
    with pytest.raises(SystemExit) as exited:
        proofs.main(["--api-key-file", str(tmp_path / "missing")])
    assert exited.value.code == 2
    assert "cannot read the API key file" in capsys.readouterr().err
    assert not ApiKey.objects.exists()
