"""One authenticated SSH connection to a target, the way `ssh` would make it.

- ~/.ssh/config through paramiko.SSHConfig: HostName, User, Port, IdentityFile,
  IdentitiesOnly, UserKnownHostsFile, GlobalKnownHostsFile, ProxyCommand, ForwardAgent,
  ServerAliveInterval, ConnectTimeout (what paramiko supports; ProxyJump is not);
- host keys checked against the known_hosts files (the user's, then the system's): an
  unknown key is refused with its SHA256 fingerprint and the option that accepts it for
  one run (`--accept-host-key SHA256:...`); a key that differs from the known one is
  refused loudly, whatever the options say;
- keys from IdentityFile, ssh-agent and ~/.ssh/id_* (not with IdentitiesOnly), a password
  or key passphrase only from $KMATRIX_SSH_PASSWORD, which no message or log ever shows.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from ...errors import InfraError, UserError
from .options import PASSWORD_ENV, SshOptions
from .spec import SshSpec

log = logging.getLogger("kmatrix.ssh")

ACCEPT_OPTION = "--accept-host-key"
_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
#: unanswered TCP keepalive probes before the kernel declares the connection dead
_KEEPALIVE_PROBES = 4


class HostKeyUnknownError(UserError):
    """The target's host key is in no known_hosts file and was not accepted."""

    def __init__(self, spec: SshSpec, name: str, key_type: str, fingerprint: str) -> None:
        super().__init__(
            f"target {spec}: the host key of {name} is not known ({key_type} "
            f"{fingerprint}): refusing to connect",
            hint=f"check the fingerprint on the target (ssh-keygen -lf "
                 f"/etc/ssh/ssh_host_*_key.pub), then accept it for this run with "
                 f"{ACCEPT_OPTION} {fingerprint}, or add it to ~/.ssh/known_hosts")
        self.fingerprint = fingerprint


class HostKeyChangedError(UserError):
    """The target offered a host key different from the one known_hosts has for it."""

    def __init__(self, spec: SshSpec, name: str, offered: paramiko.PKey,
                 known: paramiko.PKey) -> None:
        super().__init__(
            f"target {spec}: WARNING: THE HOST KEY OF {name} HAS CHANGED: it offered "
            f"{offered.get_name()} {offered.fingerprint}, known_hosts has "
            f"{known.get_name()} {known.fingerprint}. Someone may be intercepting the "
            "connection (or the machine was reinstalled): refusing to connect",
            hint=f"if the change is expected, remove the old key (ssh-keygen -R '{name}') "
                 f"and accept the new one ({ACCEPT_OPTION} {offered.fingerprint}); "
                 f"{ACCEPT_OPTION} alone never overrides a changed key")
        self.fingerprint = offered.fingerprint


class SshAuthError(UserError):
    """The target refused every credential we had."""


class TargetUnreachableError(InfraError):
    """No SSH session could be made: the network, the server, a timeout."""


@dataclass(frozen=True)
class HostParams:
    """Where and how to connect, after ~/.ssh/config."""

    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    forward_agent: bool = False
    proxy_command: str | None = None
    user_known_hosts: tuple[Path, ...] = ()
    global_known_hosts: tuple[Path, ...] = ()
    #: seconds between SSH-level keepalives (ServerAliveInterval; 0: none)
    server_alive: float = 0.0
    connect_timeout: float = 20.0

    @property
    def host_key_name(self) -> str:
        """How known_hosts names this server (`host`, or `[host]:port` off port 22)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def host_params(spec: SshSpec, options: SshOptions) -> HostParams:
    """`spec` with the user's ssh config applied (the URL's user and port win, as the
    command line does over the config with ssh)."""
    config = paramiko.SSHConfig()
    if options.ssh_config is not None:
        path = options.ssh_config.expanduser()
        if path.is_file():
            config = paramiko.SSHConfig.from_path(str(path))
    entry: Any = config.lookup(spec.host)
    files = [os.path.expanduser(f) for f in entry.get("identityfile", [])]
    user_known = _paths(entry.get("userknownhostsfile"), _USER_KNOWN_HOSTS)
    global_known = _paths(entry.get("globalknownhostsfile"), _GLOBAL_KNOWN_HOSTS)
    proxy = entry.get("proxycommand")
    return HostParams(
        hostname=str(entry.get("hostname", spec.host)),
        port=spec.port if spec.port is not None else int(entry.get("port", 22)),
        user=spec.user or str(entry.get("user") or getpass.getuser()),
        identity_files=tuple(f for f in files if os.path.isfile(f)),
        identities_only=_yes(entry.get("identitiesonly")),
        forward_agent=_yes(entry.get("forwardagent")),
        proxy_command=str(proxy) if proxy and str(proxy).lower() != "none" else None,
        user_known_hosts=user_known, global_known_hosts=global_known,
        server_alive=float(entry.get("serveraliveinterval", 0) or 0),
        connect_timeout=float(entry.get("connecttimeout", options.connect_timeout)))


def _yes(value: Any) -> bool:
    return str(value or "").lower() in ("yes", "true")


def _paths(value: Any, default: tuple[str, ...]) -> tuple[Path, ...]:
    words = str(value).split() if value else list(default)
    return tuple(Path(os.path.expanduser(w)) for w in words if w.lower() != "none")


class _AcceptListed(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Unknown host keys: accepted when their fingerprint was given with
    --accept-host-key (for this connection only: nothing is saved), refused otherwise."""

    def __init__(self, spec: SshSpec, accepted: frozenset[str]) -> None:
        self.spec = spec
        self.accepted = accepted

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        if key.fingerprint in self.accepted:
            log.warning("%s: accepting the unknown %s host key %s of %s for this run "
                        "(%s; not saved)", self.spec, key.get_name(), key.fingerprint,
                        hostname, ACCEPT_OPTION)
            return
        raise HostKeyUnknownError(self.spec, hostname, key.get_name(), key.fingerprint)


def connect(spec: SshSpec, options: SshOptions) -> tuple[paramiko.SSHClient, HostParams]:
    """An authenticated client (the caller closes it) and the parameters it used.
    HostKeyUnknownError, HostKeyChangedError, SshAuthError (user errors: fix and rerun) or
    TargetUnreachableError (the network or the server)."""
    params = host_params(spec, options)
    client = paramiko.SSHClient()
    try:
        for path in (*params.global_known_hosts, *params.user_known_hosts):
            if path.is_file():  # the later (the user's) win over the system's
                client.load_system_host_keys(str(path))
        client.set_missing_host_key_policy(_AcceptListed(spec, options.accept_host_keys))
        _connect(client, spec, params)
        _keep_alive(client, params, options.keepalive)
    except BaseException:
        client.close()
        raise
    return client, params


def _connect(client: paramiko.SSHClient, spec: SshSpec, params: HostParams) -> None:
    secret = os.environ.get(PASSWORD_ENV) or None
    sock = paramiko.ProxyCommand(params.proxy_command) if params.proxy_command else None
    agent = not params.identities_only and bool(os.environ.get("SSH_AUTH_SOCK"))
    try:
        client.connect(params.hostname, params.port, params.user, password=secret,
                       passphrase=secret, key_filename=list(params.identity_files) or None,
                       timeout=params.connect_timeout, banner_timeout=params.connect_timeout,
                       auth_timeout=params.connect_timeout, allow_agent=agent,
                       look_for_keys=not params.identities_only, sock=sock)
    except paramiko.BadHostKeyException as exc:
        raise HostKeyChangedError(spec, params.host_key_name, exc.key,
                                  exc.expected_key) from None
    except paramiko.SSHException as exc:
        transport = client.get_transport()
        if transport is not None and transport.is_active() and \
                not transport.is_authenticated():  # the host was verified: auth failed
            raise SshAuthError(
                f"target {spec}: {params.user}@{params.hostname}:{params.port} refused the "
                f"authentication ({_tried(params, agent, secret is not None)}; last "
                f"error: {exc or type(exc).__name__})", hint=_AUTH_HINT) from None
        raise TargetUnreachableError(
            f"target {spec}: SSH to {params.hostname}:{params.port} failed: {exc}") from None
    except (OSError, EOFError) as exc:
        raise TargetUnreachableError(
            f"target {spec}: cannot reach {params.hostname}:{params.port}: "
            f"{exc or type(exc).__name__}",
            hint="is the machine up and its sshd listening? (ssh -v shows the same path)"
        ) from None


_AUTH_HINT = ("put your public key in the target's ~/.ssh/authorized_keys and name the "
              "private key with IdentityFile in ~/.ssh/config or load it into ssh-agent; "
              f"an encrypted key's passphrase (or a password) comes from ${PASSWORD_ENV}")


def _tried(params: HostParams, agent: bool, secret: bool) -> str:
    """What was offered, without any secret."""
    parts = [f"key files: {', '.join(params.identity_files) or 'none named'}"]
    if not params.identities_only:
        parts.append("~/.ssh/id_*")
    parts.append(f"ssh-agent: {'yes' if agent else 'no'}")
    parts.append(f"password: {'from ' + PASSWORD_ENV if secret else 'none'}")
    return "; ".join(parts)


def _keep_alive(client: paramiko.SSHClient, params: HostParams, seconds: float) -> None:
    """A dead peer (machine down, cable pulled) ends the connection within about
    `seconds` x 5: TCP keepalive probes when idle, TCP_USER_TIMEOUT while data waits for
    an acknowledgement; SSH keepalives as ServerAliveInterval asks (NAT)."""
    transport = client.get_transport()
    if transport is None:
        return
    if params.server_alive > 0:
        transport.set_keepalive(int(params.server_alive))
    sock = transport.sock
    if not isinstance(sock, socket.socket) or seconds <= 0:
        return  # a ProxyCommand: its own connection's business
    interval = max(1, int(seconds))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, _KEEPALIVE_PROBES)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                    interval * (_KEEPALIVE_PROBES + 1) * 1000)
