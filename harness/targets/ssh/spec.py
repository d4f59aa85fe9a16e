"""`--target ssh://[user@]host[:port]`, and the matrix column a target makes."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ...acquire.kernel import Kernel
from ...errors import UserError

SCHEME = "ssh"


@dataclass(frozen=True)
class SshSpec:
    """Where a target is, as the user wrote it; user and port None: from ~/.ssh/config (or
    the local user name and 22), as ssh does."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> SshSpec:
        """`ssh://[user@]host[:port]`; UserError for anything else, and for a password in
        the URL (it would end up in reports and process lists)."""
        text = text.strip()
        try:
            url = urlsplit(text)
            port = url.port
        except ValueError as exc:
            raise UserError(f"--target {text!r}: {exc}", hint=_FORM) from exc
        if url.scheme != SCHEME or not url.hostname:
            raise UserError(f"--target {text!r}: not an ssh:// URL", hint=_FORM)
        if url.password is not None:
            raise UserError(f"--target {_without_password(text)}: a password in the URL",
                            hint="use a key (ssh-agent, IdentityFile in ~/.ssh/config) or "
                                 "set KMATRIX_SSH_PASSWORD in the environment")
        if url.path not in ("", "/") or url.query or url.fragment:
            raise UserError(f"--target {text!r}: unexpected path or query", hint=_FORM)
        host = url.hostname
        if ":" in host:  # IPv6: keep it as written, without brackets (ssh's form)
            host = host.strip("[]")
        return cls(host=host, user=url.username or None, port=port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{SCHEME}://{user}{host}{port}"


_FORM = "give --target ssh://[user@]host[:port] (host may be an alias of ~/.ssh/config)"


def _without_password(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return text
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostpart}"


@dataclass(frozen=True)
class TargetKernel(Kernel):
    """The column of a target: the kernel the machine runs (asked at session start). Its
    `image` is the path of that image on the target, never read here; `config` is a local
    copy of the target's /boot/config-RELEASE when readable (expectations read it)."""

    #: where the target is (None never: a default only because Kernel's fields have some)
    target: SshSpec | None = None
    #: the login user (after ~/.ssh/config), and whether the agent runs under `sudo -n`
    user: str = ""
    sudo: bool = False
    #: the Python on the target that runs the agent
    python: str = ""
    #: the target's CPUs and memory, for the report's columns
    cpus: int = 0
    memory: str = ""
