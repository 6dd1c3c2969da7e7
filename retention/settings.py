"""Qingli settings, all driven by the environment.

Zero-setup default (no variables set): SQLite in ``var/``, an in-process queue,
and a local secret and master key generated into ``var/``. Production sets the
variables documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

VAR_DIR = Path(env("QINGLI_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret(name: str, nbytes: int) -> str:
    """Read or create a per-checkout secret file, for the zero-setup default only."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(nbytes))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env("SECRET_KEY", default=None) or _local_secret("secret.key", 50)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Behind TLS in production: every cookie secure, HSTS on, plain HTTP redirected.
HTTPS = env.bool("QINGLI_HTTPS", default=False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env.bool("QINGLI_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
LANGUAGE_COOKIE_SECURE = HTTPS
# No script reads a cookie: the CSRF token reaches htmx through the page (base.html).
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The absolute cap of a browser session, counted from sign-in; the idle limit is the
# policy ``session_idle_minutes`` (see retention/web/sessions.py).
SESSION_COOKIE_AGE = env.int("QINGLI_SESSION_AGE_SECONDS", default=8 * 3600)
# Behind reverse proxies, how many of them append to X-Forwarded-For: the client address
# (audit log, sign-in lockout) is then taken from there instead of the proxy's address.
QINGLI_PROXY_COUNT = env.int("QINGLI_PROXY_COUNT", default=0)

INSTALLED_APPS = [
    "retention.apps.QingliAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "audit",
    "retention.apps.RetentionConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # On Django 6, replace with "django.middleware.csp.ContentSecurityPolicyMiddleware".
    "retention.web.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "retention.web.middleware.ChosenLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session passed the second factor.
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "retention.web.sessions.IdleSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

# --- Content-Security-Policy -------------------------------------------------------------
# Django 6's SECURE_CSP format, so moving to Django 6 only swaps the middleware. No inline
# scripts or styles of our own; the few fixed inline blocks of the RQ dashboard and the
# Swagger page are allowed by their hashes (retention/web/csp.py).
from retention.web.csp import THIRD_PARTY_SCRIPT_HASHES, THIRD_PARTY_STYLE_HASHES  # noqa: E402

SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'", *THIRD_PARTY_SCRIPT_HASHES],
    "style-src": ["'self'", *THIRD_PARTY_STYLE_HASHES],
    # Swagger UI's stylesheet draws its icons from data: URIs.
    "img-src": ["'self'", "data:"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}

# --- sign-in throttling (django-axes) ------------------------------------------------------
# A username, or an address, with QINGLI_SIGNIN_FAILURE_LIMIT failed sign-ins, each less
# than the cool-off after the one before, is refused until the cool-off has passed since
# the last of them, or an admin lifts the lockout (retention/access/signin.py). Web and API alike.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("QINGLI_SIGNIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("QINGLI_SIGNIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Attempts while locked out do not extend the lockout: it ends when it said it would.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not wipe the count: it would let anyone with an account reset their
# address's counter between guesses at other accounts.
AXES_RESET_ON_SUCCESS = False
AXES_HANDLER = "retention.access.signin.AuditingLockoutHandler"
AXES_LOCKOUT_CALLABLE = "retention.access.signin.lockout_response"
AXES_CLIENT_IP_CALLABLE = "audit.log.client_ip"
# Successful sign-ins are in the audit log already; lockouts are lifted through the
# audited do_lift_lockout, not by deleting rows in the Django admin.
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ADMIN = False

ROOT_URLCONF = "retention.urls"
WSGI_APPLICATION = "retention.wsgi.application"
ASGI_APPLICATION = "retention.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "retention.web.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'qingli.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the in-process worker write while pages read.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "retention.Member"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    # Attachment bytes are ciphertext; they are never served directly.
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed files once collectstatic has run (production); the sources until
    # then, so a fresh checkout serves pages instead of failing on a missing manifest.
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG and (STATIC_ROOT / "staticfiles.json").exists()
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
WHITENOISE_MANIFEST_STRICT = False

# E-mail: EMAIL_URL such as smtp+tls://user:pass@host:587; console by default.
_email = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(_email)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="qingli@localhost")

# --- encryption at rest -------------------------------------------------------------------
# Base64 of 32 random bytes. Unset: a local key file is generated (zero-setup only).
QINGLI_MASTER_KEY = env("QINGLI_MASTER_KEY", default=None)
QINGLI_MASTER_KEY_FILE = VAR_DIR / "master.key"
# Earlier master keys, only while `manage.py rotate_master_key` moves data keys off them.
QINGLI_RETIRED_MASTER_KEYS = env.list("QINGLI_RETIRED_MASTER_KEYS", default=[])
# A generated key file beside the database would sit in the same backups: allowed only for
# the zero-setup default (SQLite) unless said otherwise.
QINGLI_ALLOW_LOCAL_MASTER_KEY = env.bool(
    "QINGLI_ALLOW_LOCAL_MASTER_KEY",
    default=DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3",
)

# --- queue ---------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default=None)
QUEUE_NAMES = ("default", "wipes", "maintenance")
if REDIS_URL:
    RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600} for name in QUEUE_NAMES}
    QINGLI_IN_PROCESS_QUEUE = False
else:
    # No Redis server: one in-memory Redis shared by the web process and a worker thread
    # (imported only here: a deployment with Redis never loads fakeredis).
    from retention.jobs.queue import in_process_queue_config

    RQ_QUEUES = {name: in_process_queue_config() for name in QUEUE_NAMES}
    QINGLI_IN_PROCESS_QUEUE = True
RQ = {"COMMIT_MODE": "on_db_commit"}

# --- cache ---------------------------------------------------------------------------------
# The API's throttles (the token endpoint's 20 calls a minute per address) count in the
# cache. With Redis, every web process and every gunicorn worker shares one count; local
# memory (the zero-setup default, one process) would give each process a limit of its own.
# The cache's keys carry their own prefix in the queue's Redis database.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "qingli-cache",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
QINGLI_START_IN_PROCESS_WORKER = env.bool("QINGLI_START_IN_PROCESS_WORKER", default=False)

# --- API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Our own tokens (hashed at rest, named, revocable); header "Token <key>" as before.
        "retention.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny by default: every view must name what it allows.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, bounded (QINGLI_MAX_API_BODY_BYTES) before a byte is read; views that take
    # more say so.
    "DEFAULT_PARSER_CLASSES": ["retention.api.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "retention.api.parsers.BoundedContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "retention.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "retention.api.exception_handler.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"token": "20/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Qingli API",
    "DESCRIPTION": "Chat-record retention and deletion governance.",
    "VERSION": "1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation also documents the refusals any client may meet (401, 404, 413, ...).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "retention.api.schema.document_refusals",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ConversationKindEnum": "retention.models.ConversationKind",
        "SensitivityEnum": "retention.models.Sensitivity",
        "HoldKindEnum": "retention.models.HoldKind",
        "RequestMethodEnum": "retention.models.RequestMethod",
        "FilingMethodEnum": ["personal", "batch", "server"],
        "ApproverRoleEnum": ["manager", "security", "admin"],
    },
}

# --- second factor (TOTP) -----------------------------------------------------------------
# The name authenticator apps show beside the member's username.
OTP_TOTP_ISSUER = env("QINGLI_TOTP_ISSUER", default="Qingli")
# Seconds a password-checked sign-in may wait for its TOTP code before starting over.
QINGLI_SECOND_FACTOR_PENDING_SECONDS = 300

# --- limits --------------------------------------------------------------------------------
QINGLI_MAX_BODY_CHARS = 20_000
QINGLI_MAX_INGEST_BATCH = 1_000
QINGLI_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
# Request bodies: API calls carry ids and short texts; ingest batches carry message bodies
# (1,000 records of up to 20,000 characters). Over the bound: 413, nothing read or changed.
QINGLI_MAX_API_BODY_BYTES = env.int("QINGLI_MAX_API_BODY_BYTES", default=1024 * 1024)
QINGLI_MAX_INGEST_BODY_BYTES = env.int("QINGLI_MAX_INGEST_BODY_BYTES", default=30 * 1024 * 1024)
# Exports: messages in one file, and exports one member may have waiting or running.
QINGLI_MAX_EXPORT_MESSAGES = env.int("QINGLI_MAX_EXPORT_MESSAGES", default=5_000_000)
QINGLI_MAX_OPEN_EXPORTS = env.int("QINGLI_MAX_OPEN_EXPORTS", default=3)
# Browser forms and API JSON (Django's own check, read through request.body); ingest
# batches are read by their own parser.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, QINGLI_MAX_API_BODY_BYTES)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="WARNING")},
    # Refusals (403, 404) are answers, not faults: log server errors only, or every
    # permission check would print a traceback.
    "loggers": {"django.request": {"level": env("REQUEST_LOG_LEVEL", default="ERROR")}},
}
QINGLI_AUDITOR_READS_BODIES = env.bool("QINGLI_AUDITOR_READS_BODIES", default=False)
# A CSV export of the audit log of at most this many events streams at once; a larger one
# is written by a job and downloaded when ready.
QINGLI_AUDIT_EXPORT_DIRECT_MAX = env.int("QINGLI_AUDIT_EXPORT_DIRECT_MAX", default=10_000)

# --- running deletions ---------------------------------------------------------------------
# Messages per batch: each batch is one short transaction followed by a checkpoint.
QINGLI_WIPE_BATCH_MESSAGES = env.int("QINGLI_WIPE_BATCH_MESSAGES", default=5_000)
# A worker holds a run for this long after each batch; a killed worker's run is taken
# over by another once it expires (the watchdog looks every minute).
QINGLI_WIPE_LEASE_SECONDS = env.int("QINGLI_WIPE_LEASE_SECONDS", default=60)
# A run interrupted or failing this many times ends as failed.
QINGLI_WIPE_MAX_ATTEMPTS = env.int("QINGLI_WIPE_MAX_ATTEMPTS", default=5)
# A pause between batches, to leave the database room under heavy load.
QINGLI_WIPE_BATCH_PAUSE_MS = env.int("QINGLI_WIPE_BATCH_PAUSE_MS", default=0)
