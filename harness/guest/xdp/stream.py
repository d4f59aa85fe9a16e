"""QEMU's `-netdev stream` framing: how a VM's frames travel over a stream socket.

QEMU's stream netdev (net/stream.c, the successor of ``-netdev socket,connect=``) carries
each Ethernet frame as a 4-byte big-endian length followed by the frame's bytes, back to
back, with no other header (no virtio-net header, no padding). A peer speaking this over
a unix socket can stand in for QEMU on one side (our VM-side relay) or be what QEMU
connects to (our AF_XDP backend): ``-netdev stream,id=n0,server=off,addr.type=unix,
addr.path=PATH``.

`encode_frame` frames one frame; `StreamDecoder` turns the bytes of a stream, cut anywhere,
back into frames. QEMU refuses a length above its receive buffer (NET_BUFSIZE, 4096 +
65536 bytes) and so does the decoder: the stream is then out of sync and unusable.
"""

from __future__ import annotations

import struct

#: bytes of the length prefix
HEADER = 4
#: QEMU's NET_BUFSIZE (include/net/net.h): the largest frame a stream peer accepts
MAX_FRAME = 4096 + 65536

_LEN = struct.Struct("!I")


class FramingError(ValueError):
    """The stream does not follow the framing (a length QEMU would refuse)."""


def encode_frame(frame: bytes | bytearray | memoryview) -> bytes:
    """`frame` with its length prefix; FramingError above MAX_FRAME."""
    size = len(frame)
    if size > MAX_FRAME:
        raise FramingError(f"a {size}-byte frame exceeds the stream limit of {MAX_FRAME}")
    return _LEN.pack(size) + bytes(frame)


def encode_frames(frames: list[bytes]) -> bytes:
    """Several frames, framed back to back (one write for a batch)."""
    return b"".join(encode_frame(f) for f in frames)


class StreamDecoder:
    """Incremental decoder: `feed` bytes as they arrive, get the complete frames.

    Zero-length frames are passed through (QEMU accepts them; what to do with one is the
    receiver's business). After a FramingError the decoder stays broken: every later
    `feed` raises too, as the stream cannot be resynchronised.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._broken: str | None = None
        #: frames decoded so far
        self.frames = 0

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Append `data`; the frames it completed, in order."""
        if self._broken is not None:
            raise FramingError(f"stream already out of sync: {self._broken}")
        self._buf += data
        out: list[bytes] = []
        start = 0
        buf = self._buf
        while len(buf) - start >= HEADER:
            (size,) = _LEN.unpack_from(buf, start)
            if size > self.max_frame:
                self._broken = (f"length prefix {size} at stream offset "
                                f"{self.frames} frames in exceeds {self.max_frame}")
                raise FramingError(self._broken)
            end = start + HEADER + size
            if end > len(buf):
                break
            out.append(bytes(buf[start + HEADER:end]))
            start = end
        if start:
            del buf[:start]
        self.frames += len(out)
        return out
