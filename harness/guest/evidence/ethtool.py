"""A device's driver statistics (`ethtool -S`), by the SIOCETHTOOL ioctl.

This is where drivers report XDP counters: veth's ``rx_queue_N_xdp_packets``,
``rx_queue_N_xdp_drops``, ``rx_queue_N_xdp_redirect``, ``rx_queue_N_xdp_tx``..., virtio_net's
``rx_queue_N_xdp_*``. Devices without driver statistics (lo, netkit) answer EOPNOTSUPP or
n_stats = 0 and are skipped after one ioctl.

Three ioctls per device (ETHTOOL_GDRVINFO for the count, ETHTOOL_GSTRINGS for the names,
ETHTOOL_GSTATS for the values); the names are cached per (driver, count).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
ETHTOOL_GSTRINGS = 0x0000001B
ETHTOOL_GSTATS = 0x0000001D
ETH_SS_STATS = 1
ETH_GSTRING_LEN = 32
#: struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32], bus_info[32],
#: erom_version[32], reserved2[12], n_priv_flags, n_stats, testinfo_len, eedump_len,
#: regdump_len
_DRVINFO = struct.Struct("=I32s32s32s32s32s12sIIIII")
#: values that are not counters
NOT_COUNTERS = frozenset({"peer_ifindex"})
#: errors meaning "this device has no driver statistics"
_NONE = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV)

_names: dict[tuple[str, int], tuple[str, ...]] = {}


def _ioctl(sock: socket.socket, ifname: str, buf: ctypes.Array[ctypes.c_char]) -> None:
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(buf))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def _drvinfo(sock: socket.socket, ifname: str) -> tuple[str, int]:
    buf = ctypes.create_string_buffer(_DRVINFO.size)
    struct.pack_into("=I", buf, 0, ETHTOOL_GDRVINFO)
    _ioctl(sock, ifname, buf)
    fields = _DRVINFO.unpack_from(buf.raw)
    return fields[1].split(b"\0", 1)[0].decode(), int(fields[8])


def _strings(sock: socket.socket, ifname: str, count: int) -> tuple[str, ...]:
    buf = ctypes.create_string_buffer(12 + count * ETH_GSTRING_LEN)
    struct.pack_into("=III", buf, 0, ETHTOOL_GSTRINGS, ETH_SS_STATS, count)
    _ioctl(sock, ifname, buf)
    raw = buf.raw[12:]
    return tuple(raw[i * ETH_GSTRING_LEN:(i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0]
                 .decode(errors="replace") for i in range(count))


def driver_stats(sock: socket.socket, ifname: str) -> dict[str, int]:
    """`ethtool -S IFNAME` as name -> value, through `sock` (any socket of the device's
    namespace); {} where the device has none."""
    try:
        driver, count = _drvinfo(sock, ifname)
    except OSError as exc:
        if exc.errno in _NONE:
            return {}
        raise
    if count <= 0:
        return {}
    key = (driver, count)
    names = _names.get(key)
    if names is None:
        names = _names[key] = _strings(sock, ifname, count)
    buf = ctypes.create_string_buffer(8 + count * 8)
    struct.pack_into("=II", buf, 0, ETHTOOL_GSTATS, count)
    try:
        _ioctl(sock, ifname, buf)
    except OSError as exc:
        if exc.errno in _NONE:
            return {}
        raise
    got = min(struct.unpack_from("=I", buf, 4)[0], count)
    values = struct.unpack_from(f"={got}Q", buf, 8)
    return {name: value for name, value in zip(names, values, strict=False)
            if name not in NOT_COUNTERS}
