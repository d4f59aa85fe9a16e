"""The host <-> guest control protocol: one JSON object per line over a virtio-serial port.

Why virtio-serial: it needs no guest network (cases own the guest's network namespaces and
must not share them with the harness), no vsock (unavailable here: no /dev/vhost-vsock),
and no sshd in the guest; QEMU connects the port to a unix socket the host listens on, so
the channel exists before the kernel boots and EOF on it means QEMU is gone.

guest -> host: {"op": "ready", ...}, {"op": "result", "id": N, ...}
host -> guest: {"op": "run", "id": N, "nodeid": ..., "timeout": s}, {"op": "shutdown"}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

PORT_NAME = "org.kmatrix.ctl"
#: the virtio-serial port of an interactive shell (kmatrix shell, --keep-failed)
SHELL_PORT_NAME = "org.kmatrix.shell"
#: the guest's uptime when virtme-ng's init ran the agent's shell line (set by that line,
#: reported in the agent's hello as "exec_at")
EXEC_AT_ENV = "KMATRIX_EXEC_AT"
#: the guest's environment variable with the number of the boot of its kernel in this
#: process (1, 2...; a case may read it). Sent with "collect", not on the agent's command
#: line: a guest restored from a snapshot was saved on another boot
BOOT_ENV = "KMATRIX_BOOT"

Message = dict[str, Any]


def encode(msg: Message) -> bytes:
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


class LineBuffer:
    """Accumulates bytes; yields complete JSON messages."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            line = line.strip()
            if line:
                out.append(json.loads(line))
        return out


@dataclass(frozen=True)
class Expectation:
    """What one kernel should do about one feature, and why: computed on the host
    (harness.matrix.features), sent to the guest with the run's set-up, which gates cases
    with it (harness.guest.expect)."""

    feature: str
    #: the kernel must support it: a refusal fails the gated cases
    expected: bool
    #: expected / configured-out / too-old / unknown / override
    state: str
    #: one line for messages: "since 6.6, CONFIG_NET_XGRESS=y in its config"
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
