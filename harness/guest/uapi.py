"""Linux UAPI constants Python's socket/os modules lack, defined once for the guest code."""

from __future__ import annotations

import ctypes
import os

#: unshare/setns flag for a network namespace (include/uapi/linux/sched.h)
CLONE_NEWNET = 0x40000000
#: getsockopt(SOL_SOCKET, SO_COOKIE): the socket's 64-bit cookie (include/uapi/asm-generic/socket.h)
SO_COOKIE = 57
#: setsockopt(SOL_SOCKET, SO_MARK)
SO_MARK = 36
#: address family of XDP sockets (include/linux/socket.h)
AF_XDP = 44
SOL_XDP = 283
#: interface flag ioctls (include/uapi/linux/sockios.h) and IFF_UP (if.h)
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

#: libc with errno kept, for the calls os lacks (unshare, setns)
libc = ctypes.CDLL(None, use_errno=True)


def libc_check(ret: int, what: str) -> int:
    """OSError with errno and message for a failed libc call (ret < 0 / != 0 conventions
    vary: callers pass what must be non-negative)."""
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret
