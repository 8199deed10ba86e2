"""Production configuration: ``gunicorn -c gunicorn.conf.py 'api.app:create_app()'``.

Every setting comes from ``config.Settings`` (the environment; see the README's Production
section):

==========================  ==========================================================
``HOST`` / ``PORT``         where to listen (default ``127.0.0.1:5000``). With auth off
                            (no ``REGISTRY_ADMIN_TOKEN`` and no API key ever created) a
                            non-loopback ``HOST`` is refused: we bind 127.0.0.1 and say so.
``WEB_CONCURRENCY``         worker processes (default 2 x CPU cores)
``GUNICORN_THREADS``        threads per worker (default 8); the per-model in-flight limit
                            stays below it (``config.Settings.inflight_limit``)
``GUNICORN_HEAD_TIMEOUT``   seconds a client has to send its request line, headers and a
                            body of up to 2 MiB, read without a thread (default 10;
                            ``api/gunicorn_worker.py``)
``GUNICORN_IO_TIMEOUT``     seconds any one read of a body or write of an answer may
                            block a thread (default 30)
``GUNICORN_MIN_RATE``       bytes a second a client must keep up, reading its answer or
                            sending its body, once it has had GUNICORN_IO_TIMEOUT seconds
                            of slack (default 16384): a 408, or the answer cut off
``GUNICORN_TIMEOUT``        seconds a silent worker lives before the master kills it (60)
``GUNICORN_GRACEFUL_TIMEOUT``  seconds a worker may finish its requests on SIGTERM (30)
``PROMETHEUS_MULTIPROC_DIR``   where the workers' metric files live. Default: a fresh
                            private directory made by ``tempfile.mkdtemp`` under the system
                            temp dir, removed when the master exits. Whatever the directory,
                            the master empties it (its ``*.db`` files) at start: files left
                            by a previous run would otherwise be added to this run's counters.
``GUNICORN_CONTROL_SOCKET`` gunicorn's control socket (default: one per port under the temp
                            dir, so that two servers on one host do not share one)
==========================  ==========================================================

Process model. ``preload_app`` stays False: the master never builds the app, every worker runs
``create_app()`` after the fork and so owns its engine and connection pool, its metrics
collector (flushed every second and at exit), its router cache and its rollout ticker. Do not
turn preloading on: background threads do not survive a fork, and onnxruntime's thread pool is
not fork-safe (a preloaded worker can abort at exit). Ticks
racing in several workers are safe (each transition is guarded by the deployment's revision)
and migrations racing at start are safe (an advisory lock on PostgreSQL, the write lock on
SQLite). ``post_fork`` still disposes an inherited pool if someone turns preloading on, so that
no two processes ever share a database socket.
"""
from __future__ import annotations

import glob
import ipaddress
import os
import shutil
import tempfile

from config import export_prometheus_dir, get_settings
from errors import ConfigurationError
from storage.database import Database
from storage.key_store import KeyStore

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

try:
    _settings = get_settings()
except ConfigurationError as exc:   # gunicorn prints this and stops; no traceback
    raise SystemExit(f"configuration error: {exc.message}") from None


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _auth_enabled() -> bool:
    """What ``api.auth.Authenticator.enabled`` will say: the admin token is set, or a key was
    ever created (an unreachable or empty database counts as no key). Either way the app
    itself refuses non-loopback peers and ``Host`` headers while auth is off."""
    if _settings.admin_token:
        return True
    try:
        db = Database(_settings.database_url, migrate=False)
        try:
            return KeyStore(db).keys_required()
        finally:
            db.dispose()   # the master keeps no connection: nothing to inherit at fork
    except Exception:
        return False


# -- where to listen -----------------------------------------------------------------------------
_host = _settings.host
_port = _settings.port
_auth_on = _auth_enabled() if not _is_loopback(_host) else None
_refused_host = _host if _auth_on is False else None
if _refused_host is not None:
    _host = "127.0.0.1"
bind = [f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"]

# -- workers -------------------------------------------------------------------------------------
workers = _settings.web_concurrency or 2 * (os.cpu_count() or 1)
# gthread, with request heads read by the event loop and deadlines on every read and write:
# slow clients cannot hold the threads (issue 21; see api/gunicorn_worker.py).
worker_class = "api.gunicorn_worker.HeadFirstWorker"
threads = _settings.server_threads
from api.gunicorn_worker import HeadFirstWorker  # noqa: E402  (the deadlines are class-wide)

HeadFirstWorker.head_timeout_s = _settings.gunicorn_head_timeout
HeadFirstWorker.io_timeout_s = _settings.gunicorn_io_timeout
HeadFirstWorker.min_rate = _settings.gunicorn_min_rate
# Files (artifact downloads) are written in chunks, each under the I/O deadline. With sendfile,
# Python waits for a full socket buffer with no deadline at all: a client that asked for a large
# artifact and never read it held the thread for ever.
sendfile = False
preload_app = False
timeout = _settings.gunicorn_timeout
graceful_timeout = _settings.gunicorn_graceful_timeout
keepalive = 5
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"   # the heartbeat file: never on a slow disk
errorlog = "-"
accesslog = _settings.gunicorn_access_log
loglevel = _settings.gunicorn_log_level
control_socket = _settings.gunicorn_control_socket or os.path.join(
    tempfile.gettempdir(), f"model-registry-gunicorn-{_port}.ctl")

# -- Prometheus multiprocess mode ----------------------------------------------------------------
# Set before any worker imports prometheus_client (workers inherit the environment). A reload
# (SIGHUP) re-reads this file: the variable is then already set, so the directory stays the same.
_OWN_PROMETHEUS_DIR: str | None = None
_PROMETHEUS_DIR = _settings.prometheus_multiproc_dir
if not _PROMETHEUS_DIR:
    _PROMETHEUS_DIR = _OWN_PROMETHEUS_DIR = tempfile.mkdtemp(prefix="model-registry-prometheus-")
    export_prometheus_dir(_OWN_PROMETHEUS_DIR)


def _empty_prometheus_dir(path: str) -> int:
    """Remove the metric files (``*.db``) of an earlier run; nothing else is touched."""
    os.makedirs(path, exist_ok=True)
    removed = 0
    for name in glob.glob(os.path.join(glob.escape(path), "*.db")):
        try:
            os.unlink(name)
            removed += 1
        except FileNotFoundError:
            continue
    return removed


# -- hooks ---------------------------------------------------------------------------------------
def on_starting(server) -> None:  # type: ignore[no-untyped-def]
    """Master, once, before the first fork: a clean metrics directory; say how auth stands."""
    path = _PROMETHEUS_DIR
    removed = _empty_prometheus_dir(path)
    server.log.info("prometheus multiprocess dir %s (%d stale files removed)", path, removed)
    if _refused_host is not None:
        server.log.warning(
            "authentication is off (no API key exists and REGISTRY_ADMIN_TOKEN is not set): "
            "listening on 127.0.0.1 only instead of %s. Set REGISTRY_ADMIN_TOKEN or create a "
            "key (flask --app api.app keys create NAME --role admin) to serve other hosts.",
            _refused_host)
    elif _auth_on is None and not _settings.admin_token:
        server.log.info("listening on loopback only; authentication applies once "
                        "REGISTRY_ADMIN_TOKEN is set or an API key exists")


def post_fork(server, worker) -> None:  # type: ignore[no-untyped-def]
    """Worker, right after the fork. With ``preload_app`` off (our default) the app is built
    after this hook and there is no pool to drop. With it on, the master's engine came
    along: drop its pooled connections *without closing them* (closing would end the
    master's sessions) so that this worker opens its own."""
    app = getattr(server.app, "callable", None)
    extensions = getattr(app, "extensions", None) or {}
    services = extensions.get("model_registry")
    if services is not None:
        services.database.engine.dispose(close=False)


def child_exit(server, worker) -> None:  # type: ignore[no-untyped-def]
    """Master, after a worker died (any way, even SIGKILL): its live gauges stop counting.
    Its counters and histograms stay in the directory, so totals never go backwards."""
    # Imported here, not above: prometheus_client fixes its storage mode at import, and the
    # workers forked from this master must import it only once the directory is exported.
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:  # type: ignore[no-untyped-def]
    """Master, at shutdown: remove the metrics directory if this file made it."""
    if _OWN_PROMETHEUS_DIR and get_settings().prometheus_multiproc_dir == _OWN_PROMETHEUS_DIR:
        shutil.rmtree(_OWN_PROMETHEUS_DIR, ignore_errors=True)
