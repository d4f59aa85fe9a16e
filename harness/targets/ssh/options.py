"""How SSH targets are reached and set up: one frozen value per run (from the pytest
options, see harness.pytest_plugin.session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: environment variable holding a password (password authentication, or the passphrase of
#: an encrypted key); never put on a command line, never logged
PASSWORD_ENV = "KMATRIX_SSH_PASSWORD"
#: the per-user cache folder on the target, relative to the login user's home
DEFAULT_CACHE = ".cache/kmatrix/target"
DEFAULT_SSH_CONFIG = Path("~/.ssh/config")


@dataclass(frozen=True)
class SshOptions:
    #: the user's ssh client configuration (HostName, User, Port, IdentityFile,
    #: IdentitiesOnly, UserKnownHostsFile, ProxyCommand, ForwardAgent, ...); None: none
    ssh_config: Path | None = DEFAULT_SSH_CONFIG
    #: host key fingerprints (SHA256:...) accepted for this run although no known_hosts
    #: file has them (never saved; a *changed* key is refused whatever this says)
    accept_host_keys: frozenset[str] = frozenset()
    #: the target's Python that runs the agent, in an environment that has pytest and
    #: pyroute2; None: the target's python3, with those synced from this host
    python: str | None = None
    #: the per-user cache folder on the target (relative: to the login user's home)
    cache_dir: str = DEFAULT_CACHE
    #: seconds to connect, and to wait for the server's banner and the authentication
    connect_timeout: float = 20.0
    #: seconds of silence on the TCP connection before it is probed; a connection that
    #: does not answer 4 probes (or leaves sent data unacknowledged as long) is dead
    keepalive: float = 15.0
    #: seconds the agent may take to say hello (after the sync) without a sign of progress
    boot_timeout: float = 300.0
    #: host watchdog margin on top of a case's own timeout before the target counts as lost
    watchdog_grace: float = 60.0
    #: the case folders (synced with the checkout: the agent collects from them)
    case_dirs: tuple[Path, ...] = ()
