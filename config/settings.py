"""Settings of the commerce AI platform: one file, every value from the environment.

Every variable is listed with its default in ``platform/.env.example``.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str, state_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

# All mutable state (embedded database, model versions, logs) lives under one folder.
STATE_DIR = Path(env_str("STATE_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
# SECRET_KEY, else a random key that the first process writes to STATE_DIR/secret_key.
SECRET_KEY = env_str("SECRET_KEY") or state_secret_key(STATE_DIR / "secret_key")
if not DEBUG and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith(("django-insecure-", "dev-only-"))):
    raise ImproperlyConfigured("SECRET_KEY is a development or short key (under 50 characters) and DEBUG is false")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# HTTPS, for a platform behind a TLS proxy (platform/.env.example: the production values).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$"]  # the load balancer's plain-HTTP health check
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# "HTTP_X_FORWARDED_PROTO,https": the header (as in request.META) and value by which the proxy says HTTPS.
_proxy_header = env_list("SECURE_PROXY_SSL_HEADER", [])
SECURE_PROXY_SSL_HEADER = tuple(_proxy_header) if len(_proxy_header) == 2 else None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "catalog",
    "backbone",
    "search",
    "recommend",
    "chatbot",
    "ads",
    "monitoring",
    "storefront",
]

MIDDLEWARE = [
    "config.middleware.RequestIDMiddleware",  # first, so that every log line of a request carries its id
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# Database: DATABASE_URL names any PostgreSQL with pgvector and pg_trgm; unset, the project
# runs its own embedded PostgreSQL in STATE_DIR/pgdata (config/pgembedded).
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "config.pgembedded",
            "NAME": env_str("EMBEDDED_DATABASE_NAME", "postgres"),
            "USER": "postgres",
            "HOST": "",
            "CONN_MAX_AGE": 60,
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Failed logins (a wrong staff password on the API or the admin, an unknown API key) per client
# address: past the limit within the window, 429 with Retry-After, and no password is hashed.
AUTHENTICATION_BACKENDS = ["catalog.throttles.LockoutModelBackend"]
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 20)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900)
# CACHE_URL (redis://...): one cache for every process. Empty: lockouts in the database (shared by
# every process) and request rates in each web process's memory (so N workers allow up to N x the rate).
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL:
    CACHES = {
        alias: {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": alias}
        for alias in ("default", "throttle")
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "platform_cache"},
        "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"},
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = STATE_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024  # a batch of 1,000 events fits well inside
# The earliest event time the API accepts (ISO date, UTC); the latest is one day from now.
EVENTS_EARLIEST = env_str("EVENTS_EARLIEST", "2000-01-01")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "catalog.auth.StorefrontKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "catalog.auth.LockoutBasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "config.schema.PlatformAutoSchema",  # error answers, staff-only security
    "DEFAULT_PARSER_CLASSES": [
        "catalog.parsers.JSONParser",  # deep nesting answers 400
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["catalog.filtering.StrictFilterBackend"],  # a filter sent empty is a 400
    # per key (or staff user) and per client address; 429 with Retry-After (catalog/throttles.py)
    "DEFAULT_THROTTLE_CLASSES": ["catalog.throttles.KeyRateThrottle", "catalog.throttles.AddressRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "key": env_str("THROTTLE_RATE_KEY", "100/s"),
        "ip": env_str("THROTTLE_RATE_IP", "200/s"),
    },
    # proxies in front that append to X-Forwarded-For; 0: the client is REMOTE_ADDR (the header is ignored)
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
    "DEFAULT_PAGINATION_CLASS": "catalog.pagination.PageSizePagination",  # page_size 1-500
    "PAGE_SIZE": 50,
    # the project's service errors (backbone.errors) as JSON 400/404/409, then DRF's own
    "EXCEPTION_HANDLER": "backbone.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Commerce AI platform API",
    "DESCRIPTION": "Search, recommendations, intent classification and ad CTR on one shared encoder.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the drf-spectacular-sidecar package: the docs page works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # request bodies get their own components (no read-only fields; non-blank text has minLength 1)
    "COMPONENT_SPLIT_REQUEST": True,
    # bodies are JSON; the form parsers (browsable API forms) cannot carry the nested and typed fields
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
    "ENUM_NAME_OVERRIDES": {
        "AlertStateEnum": "monitoring.models.Alert.State",
        "ModelStateEnum": "backbone.models.TrainedModel.State",
    },
    "GET_LIB_DOC_EXCLUDES": "config.schema.lib_doc_excludes",
}

# Celery: JSON only, state in the database. With CELERY_BROKER_URL unset the broker is
# kombu's SQLAlchemy transport on the project's own PostgreSQL (config/celery.py).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Three queues, each with its own worker: ``training`` (one process, so jobs never run two at once),
# ``bulk`` (re-embedding a whole catalogue for a version: minutes) and ``default`` (small, quick work
# that makes an app usable: new intents' prototypes, a few new products' embeddings), which bulk
# work can then never hold up.
CELERY_TASK_ROUTES = {
    "backbone.run_training_job": {"queue": "training"},
    "backbone.embed_version": {"queue": "bulk"},
}
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 6 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 6 * 3600 - 60)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# beat (embedded in the default worker) sends the reaper of dead training jobs every this many seconds.
TRAINING_REAP_INTERVAL = env_int("TRAINING_REAP_INTERVAL", 60)
# ... and the online metrics' refresh (the current and previous hour and day, then the alert rules).
METRICS_REFRESH_SECONDS = env_int("METRICS_REFRESH_SECONDS", 60)
# Days the refresh keeps hourly metric rows (daily ones stay) and recommendation answer logs (kept to
# attribute later clicks; nothing trains on them); 0 keeps them for ever.
METRICS_HOURLY_RETENTION_DAYS = env_int("METRICS_HOURLY_RETENTION_DAYS", 35)
RECOMMENDATION_LOG_RETENTION_DAYS = env_int("RECOMMENDATION_LOG_RETENTION_DAYS", 35)
CELERY_BEAT_SCHEDULE = {
    "reap-stale-training-jobs": {"task": "backbone.reap_stale_jobs", "schedule": float(TRAINING_REAP_INTERVAL)},
    "refresh-online-metrics": {"task": "monitoring.refresh", "schedule": float(METRICS_REFRESH_SECONDS)},
}

# Monitoring: who gets alert mail (comma-separated; a rule may name its own), how mail is sent
# (console by default: alerts show in the worker's log), and the bearer token Prometheus scrapes
# /metrics with (empty: staff only).
ALERT_EMAILS = env_str("ALERT_EMAILS", "")
ALERT_WEBHOOK_TIMEOUT = env_int("ALERT_WEBHOOK_TIMEOUT", 5)
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL", "")  # alerts without a rule (e.g. retraining held back)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "alerts@localhost")
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# The shared backbone.
BACKBONE_BASE_MODEL = env_str("BACKBONE_BASE_MODEL")  # a local HF model folder; empty: packaged MiniLM
BACKBONE_DEVICE = env_str("BACKBONE_DEVICE", "auto")  # auto | cpu | cuda
BACKBONE_BATCH_SIZE = env_int("BACKBONE_BATCH_SIZE", 32)
BACKBONE_MAX_LENGTH = env_int("BACKBONE_MAX_LENGTH", 128)
BACKBONE_TORCH_THREADS = env_int("BACKBONE_TORCH_THREADS", 0)  # 0: torch's default
# Search, chat and ads encode a request's text with an ONNX Runtime copy of the backbone on the CPU
# (backbone/onnx_encoder.py: the same vectors, 2.6-2.9x faster); false: with PyTorch.
BACKBONE_ONNX_SERVING = env_bool("BACKBONE_ONNX_SERVING", True)
MODELS_DIR = Path(env_str("MODELS_DIR", str(STATE_DIR / "models"))).resolve()
# A running training job whose heartbeat is older than this is marked failed.
TRAINING_HEARTBEAT_TIMEOUT = env_int("TRAINING_HEARTBEAT_TIMEOUT", 300)

# Every request gets an id (an incoming X-Request-ID if plain, else a new one), answered in
# X-Request-ID and written in each log line of the request; a 5xx logs its traceback under it.
REQUEST_ID_RESPONSE_HEADER = "X-Request-ID"
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "log_request_id.filters.RequestIDFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"pgserver": {"level": "WARNING"}, "filelock": {"level": "WARNING"}},
}
