"""Configuration is read from the environment in one place, abplatform/settings.py, into settings of the same names.

Everything else reads ``django.conf.settings`` or gets the value as an argument, so one file says what can be
configured and with which default. These tests hold that line (no environment read elsewhere, no app module
importing the bootstrap ``abplatform.embedded``) and check the names and defaults in a fresh process.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("abplatform", "experiments", "recommender")
SETTINGS_FILE = Path("abplatform/settings.py")
# Writes only: the text encoder's offline flags, and pgserver's private runtime dir (its check keeps a session's own).
ALLOWED_READS = {(Path("abplatform/embedded.py"), "XDG_RUNTIME_DIR")}


def _sources(*packages: str):
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT), ast.parse(path.read_text(), filename=str(path))


def _is_os_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
            and node.value.id == "os")


def _environment_reads(path: Path, tree: ast.AST) -> list[str]:
    """Each place that reads ``os.environ`` / ``os.getenv``; writes (``setdefault``, item assignment) are not reads."""
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found = []
    for node in ast.walk(tree):
        where = f"{path}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{where} from os import {a.name}" for a in node.names if a.name in ("environ", "getenv")]
        if isinstance(node, ast.Attribute) and node.attr == "getenv" and getattr(node.value, "id", "") == "os":
            found.append(f"{where} os.getenv")
        if not _is_os_environ(node):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.attr == "setdefault":
            continue
        if isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store):
            continue
        if isinstance(parent, ast.Compare) and isinstance(parent.left, ast.Constant) and \
                (path, parent.left.value) in ALLOWED_READS:
            continue
        found.append(f"{where} {ast.unparse(parent) if parent is not None else 'os.environ'}")
    return found


def test_the_environment_is_read_only_in_settings():
    reads = [read for path, tree in _sources(*PACKAGES) if path != SETTINGS_FILE
             for read in _environment_reads(path, tree)]
    assert reads == [], "read these through django.conf.settings or a parameter:\n" + "\n".join(reads)


def test_no_app_module_imports_the_embedded_servers_module():
    """abplatform.embedded is bootstrap code for settings.py (and the Makefile); the var dir is the VAR_DIR setting."""
    offenders = []
    for path, tree in _sources(*PACKAGES):
        if path in (SETTINGS_FILE, Path("abplatform/embedded.py")):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.startswith("abplatform.embedded") for a in node.names):
                offenders.append(f"{path}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and (node.module == "abplatform.embedded" or (
                    node.module == "abplatform" and any(a.name == "embedded" for a in node.names))):
                offenders.append(f"{path}:{node.lineno}")
    assert offenders == []


PROBE = """
import json
from django.conf import settings
from abplatform import embedded
names = json.loads(input())
print(json.dumps({name: str(getattr(settings, name)) for name in names} | {"embedded": str(embedded.var_dir())}))
"""
VARIABLES = {  # setting -> its default, as the code read the variable before it was a setting
    "EXPERIMENTS_EVENTS_QUEUE": "celery", "EXPERIMENTS_OUTBOX_RELAY": "True", "EXPERIMENTS_RELAY_BATCH": "10000",
    "EXPERIMENTS_RELAY_RESEND_S": "30.0", "EXPERIMENTS_RELAY_POLL_S": "0.5",
    "WEB_WORKERS": "2", "WEB_THREADS": "4", "WEB_CPU_AFFINITY": "True",
    "LLM_BASE_URL": "", "LLM_API_KEY": "", "LLM_MODEL": "gpt-4o-mini", "LLM_TIMEOUT": "60.0", "LLM_CONCURRENCY": "4",
    "LLM_MAX_RETRIES": "3", "LLM_JSON_MODE": "True", "WEB_URL_TEMPLATES": "", "WEB_USER_AGENT": "",
    "WEB_TIMEOUT_S": "10.0", "WEB_MAX_BYTES": "2000000", "WEB_MIN_INTERVAL_S": "1.0", "WEB_MAX_RETRIES": "3",
    "DEMO_SIZE": "1200", "ADMIN_PASSWORD": "", "SOUNDFONT": "",
    "PLAYER_BASE_URL": "http://127.0.0.1:8000", "PLAYER_API_KEY": "", "PLAYER_API_KEY_FILE": "",
    "MUSICNN_CACHE": str(ROOT / "var" / "models" / "musicnn"),
}
FOLDERS = ("VAR_DIR", "LLM_CACHE_DIR", "WEB_CACHE_DIR")


def _settings_in_a_fresh_process(var_dir: Path, **variables: str) -> dict[str, str]:
    """The settings a new process gets from ``variables`` alone (no .env, no servers: external URLs are given and
    never contacted, only read)."""
    env = {key: value for key, value in os.environ.items()
           if key not in VARIABLES and key not in ("ABPLATFORM_VAR_DIR", "LLM_CACHE_DIR", "WEB_CACHE_DIR")}
    env.update(DJANGO_SETTINGS_MODULE="abplatform.settings", DATABASE_URL="postgres://nobody@127.0.0.1:9/none",
               CELERY_BROKER_URL="redis://127.0.0.1:9/0", SECRET_KEY="test", ABPLATFORM_VAR_DIR=str(var_dir),
               **variables)
    done = subprocess.run([sys.executable, "-c", PROBE], input=json.dumps([*VARIABLES, *FOLDERS]), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_each_variable_becomes_the_setting_of_its_name_with_the_old_default(tmp_path):
    var = tmp_path / "var"
    defaults = _settings_in_a_fresh_process(var)
    assert {name: defaults[name] for name in VARIABLES} == VARIABLES
    # ABPLATFORM_VAR_DIR moves VAR_DIR, the caches under it, and the embedded servers (handed over by settings.py).
    assert (defaults["VAR_DIR"], defaults["embedded"]) == (str(var), str(var.resolve()))
    assert defaults["LLM_CACHE_DIR"] == str(var / "cache" / "llm") and defaults["WEB_CACHE_DIR"] == str(
        var / "cache" / "web")

    given = _settings_in_a_fresh_process(
        var, WEB_CPU_AFFINITY="2", EXPERIMENTS_OUTBOX_RELAY="0", LLM_JSON_MODE="No", LLM_CACHE_DIR="",
        ADMIN_PASSWORD="$not-a-reference", PLAYER_API_KEY="$also.verbatim", WEB_WORKERS="3", LLM_TIMEOUT="2.5",
        MUSICNN_CACHE=str(tmp_path / "musicnn"))
    assert given["WEB_CPU_AFFINITY"] == "True"  # only "0" ever turned these two off
    assert given["EXPERIMENTS_OUTBOX_RELAY"] == "False" and given["LLM_JSON_MODE"] == "False"
    assert given["LLM_CACHE_DIR"] == str(var / "cache" / "llm")  # empty means the default, as before
    assert (given["ADMIN_PASSWORD"], given["PLAYER_API_KEY"]) == ("$not-a-reference", "$also.verbatim")
    assert (given["WEB_WORKERS"], given["LLM_TIMEOUT"], given["MUSICNN_CACHE"]) == (
        "3", "2.5", str(tmp_path / "musicnn"))


def test_the_embedded_command_takes_the_var_dir_and_the_makefile_passes_it(tmp_path):
    done = subprocess.run([sys.executable, "-m", "abplatform.embedded", "status", "--var-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["postgresql: stopped", "redis: stopped"]  # nothing runs in an empty dir
    makefile = (ROOT / "Makefile").read_text()
    assert '-m abplatform.embedded --var-dir "$${ABPLATFORM_VAR_DIR:-var}"' in makefile
    assert "$(EMBEDDED) start" in makefile and "$(EMBEDDED) stop" in makefile
