"""AF_XDP rings and structures without a kernel: the ring index arithmetic on
bytearray-backed rings (a userspace producer and consumer over one buffer stand in for
the kernel), descriptor encoding, and the ctypes structures and constants of
harness.guest.xdp.uapi against what gcc sees in <linux/if_xdp.h>."""

from __future__ import annotations

import ctypes
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from c_facts import CFacts

from harness.guest.xdp import uapi
from harness.guest.xdp.ring import (
    ADDR_SIZE,
    DESC_SIZE,
    U32,
    ConsumerRing,
    Desc,
    ProducerRing,
    RingOffsets,
    decode_desc,
    encode_desc,
    require_tso,
    ring_layout,
)
from harness.guest.xdp.umem import UmemConfig
from harness.guest.xdp.xsk import RxFrame, XskConfig, join_packets


def _tso_ok() -> bool:
    try:
        require_tso()
    except NotImplementedError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _tso_ok(), reason="AF_XDP rings need x86-64 (TSO)")


def ring_pair(size: int, entry_size: int, *, start: int = 0
              ) -> tuple[bytearray, ProducerRing, ConsumerRing, RingOffsets]:
    """A producer and a consumer over one buffer whose indexes both start at `start`."""
    offsets, length = ring_layout(size, entry_size)
    buf = bytearray(length)
    struct.pack_into("=I", buf, offsets.producer, start)
    struct.pack_into("=I", buf, offsets.consumer, start)
    prod = ProducerRing(buf, offsets, size, entry_size, name="prod")
    cons = ConsumerRing(buf, offsets, size, entry_size, name="cons")
    return buf, prod, cons, offsets


# --------------------------------------------------------------------------- rings


def test_fresh_ring_is_empty_with_all_entries_free() -> None:
    _, prod, cons, _ = ring_pair(8, ADDR_SIZE)
    assert prod.free() == 8 and prod.free(8) == 8
    assert cons.available() == 0
    assert cons.peek(4) == (0, 0)
    assert prod.mask == 7 and cons.size == 8


def test_reserve_submit_peek_release() -> None:
    buf, prod, cons, off = ring_pair(8, ADDR_SIZE)
    idx = prod.reserve(3)
    assert idx == 0 and prod.reserved() == 3
    for i in range(3):
        prod.set_addr(idx + i, 0x1000 * (i + 1))
    assert cons.available() == 0, "nothing is visible before submit"
    prod.submit(3)
    assert struct.unpack_from("=I", buf, off.producer)[0] == 3
    assert cons.available() == 3 and cons.available(2) == 2
    start, n = cons.peek(8)
    assert (start, n) == (0, 3)
    assert [cons.addr(start + i) for i in range(n)] == [0x1000, 0x2000, 0x3000]
    assert prod.free() == 5, "the consumer has not released yet"
    cons.release(3)
    assert struct.unpack_from("=I", buf, off.consumer)[0] == 3
    assert prod.free(8) == 8


def test_full_ring_refuses_reservations_until_released() -> None:
    _, prod, cons, _ = ring_pair(4, ADDR_SIZE)
    assert prod.put_addrs([1, 2, 3, 4]) == 4
    assert prod.free() == 0
    assert prod.reserve(1) is None
    assert prod.put_addrs([5]) == 0
    assert cons.take_addrs(2) == [1, 2]
    # the producer's cached consumer index is stale until it needs more than it shows
    assert prod.cached_cons == 4
    assert prod.free(1) == 2 and prod.cached_cons == 6
    assert prod.put_addrs([5, 6, 7]) == 2
    # likewise the consumer re-reads the producer index only once its cache shows none
    assert cons.take_addrs() == [3, 4]
    assert cons.take_addrs() == [5, 6]


def test_reserve_is_all_or_nothing() -> None:
    _, prod, _, _ = ring_pair(4, ADDR_SIZE)
    assert prod.reserve(3) == 0
    prod.submit(3)
    assert prod.reserve(2) is None
    assert prod.reserved() == 0
    with pytest.raises(ValueError):
        prod.reserve(5)
    with pytest.raises(ValueError):
        prod.reserve(0)


def test_submit_and_release_check_their_counts() -> None:
    _, prod, cons, _ = ring_pair(4, ADDR_SIZE)
    prod.reserve(2)
    with pytest.raises(ValueError, match="submit"):
        prod.submit(3)
    prod.submit(2)
    cons.peek(1)
    with pytest.raises(ValueError, match="release"):
        cons.release(2)


def test_cancel() -> None:
    _, prod, cons, _ = ring_pair(8, ADDR_SIZE)
    prod.reserve(4)
    prod.cancel(1)
    assert prod.reserved() == 3
    for i in range(3):
        prod.set_addr(i, i + 10)
    prod.submit(3)
    assert cons.peek(3) == (0, 3)
    cons.cancel(1)
    cons.release(2)
    assert cons.take_addrs() == [12]


@pytest.mark.parametrize("start", [U32 - 2, U32, 2**31 - 1], ids=["2**32-3", "2**32-1", "2**31-1"])
def test_indexes_wrap_at_2_32(start: int) -> None:
    buf, prod, cons, off = ring_pair(4, ADDR_SIZE, start=start)
    assert prod.free() == 4 and cons.available() == 0
    values = list(range(100, 110))
    got: list[int] = []
    for i in range(0, len(values), 3):
        assert prod.put_addrs(values[i: i + 3]) == len(values[i: i + 3])
        got += cons.take_addrs()
    assert got == values
    end = (start + len(values)) & U32
    assert struct.unpack_from("=I", buf, off.producer)[0] == end
    assert struct.unpack_from("=I", buf, off.consumer)[0] == end
    assert prod.free() == 4 and cons.available() == 0


def test_free_and_available_across_the_wrap() -> None:
    _, prod, cons, _ = ring_pair(8, ADDR_SIZE, start=U32 - 1)
    assert prod.put_addrs([1, 2, 3, 4, 5]) == 5
    assert prod.producer == 3, "0xffffffff + 5 wraps to 3"
    assert cons.available() == 5
    assert prod.free(8) == 3


def test_entries_sit_at_index_and_mask() -> None:
    buf, prod, cons, off = ring_pair(4, ADDR_SIZE, start=5)
    prod.put_addrs([0xAABB])
    # index 5 & mask 3 = slot 1
    assert struct.unpack_from("=Q", buf, off.desc + 1 * ADDR_SIZE)[0] == 0xAABB
    assert cons.take_addrs() == [0xAABB]


def test_descriptor_ring_round_trip() -> None:
    buf, prod, cons, off = ring_pair(4, DESC_SIZE, start=U32 - 1)
    descs = [Desc(0x1000 + 256, 60, 0), Desc(0x2000, 1514, uapi.XDP_PKT_CONTD),
             Desc(0x3000, 9, 0)]
    assert prod.put_descs(descs) == 3
    slot = (U32 - 1) & 3
    assert buf[off.desc + slot * DESC_SIZE: off.desc + (slot + 1) * DESC_SIZE] == \
        encode_desc(descs[0])
    assert cons.take_descs() == descs


def test_entry_kind_is_enforced() -> None:
    _, addr_ring, _, _ = ring_pair(4, ADDR_SIZE)
    _, desc_ring, _, _ = ring_pair(4, DESC_SIZE)
    with pytest.raises(TypeError):
        addr_ring.desc(0)
    with pytest.raises(TypeError):
        desc_ring.addr(0)
    with pytest.raises(TypeError):
        desc_ring.set_addr(0, 1)


def test_needs_wakeup_reads_the_flags_word() -> None:
    buf, prod, _, off = ring_pair(4, ADDR_SIZE)
    assert not prod.needs_wakeup()
    struct.pack_into("=I", buf, off.flags, uapi.XDP_RING_NEED_WAKEUP)
    assert prod.needs_wakeup() and prod.flags == 1


def test_rings_pick_up_existing_indexes() -> None:
    """A ring made over a buffer the other side already used starts from its indexes,
    with the producer's free count computed from the real consumer (as libxdp does)."""
    offsets, length = ring_layout(8, ADDR_SIZE)
    buf = bytearray(length)
    struct.pack_into("=I", buf, offsets.producer, 20)
    struct.pack_into("=I", buf, offsets.consumer, 17)
    prod = ProducerRing(buf, offsets, 8, ADDR_SIZE)
    cons = ConsumerRing(buf, offsets, 8, ADDR_SIZE)
    assert prod.free() == 5
    assert cons.peek(8) == (17, 3)


@pytest.mark.parametrize("size", [0, 3, 6, 1000])
def test_size_must_be_a_power_of_two(size: int) -> None:
    offsets, _ = ring_layout(1024, ADDR_SIZE)
    with pytest.raises(ValueError, match="power of two"):
        ProducerRing(bytearray(65536), offsets, size, ADDR_SIZE)


def test_layout_is_checked() -> None:
    offsets, length = ring_layout(8, ADDR_SIZE)
    with pytest.raises(ValueError, match="too small"):
        ConsumerRing(bytearray(length - 1), offsets, 8, ADDR_SIZE)
    with pytest.raises(ValueError, match="aligned"):
        ConsumerRing(bytearray(length), RingOffsets(2, 64, 192, 128), 8, ADDR_SIZE)
    with pytest.raises(ValueError, match="entry size"):
        ConsumerRing(bytearray(length), offsets, 8, 12)
    assert offsets.mapping_size(8, ADDR_SIZE) == offsets.desc + 64 == length


def test_close_releases_the_buffer() -> None:
    buf, prod, cons, _ = ring_pair(4, ADDR_SIZE)
    with pytest.raises(BufferError):
        buf.extend(b"x")  # exported to the rings' views
    with prod, cons:
        pass
    assert prod.closed and cons.closed
    buf.extend(b"x")
    prod.close()  # twice is fine


def test_other_architectures_are_refused() -> None:
    require_tso("x86_64")
    for machine in ("aarch64", "ppc64le", "riscv64", "s390x"):
        with pytest.raises(NotImplementedError, match="total store order"):
            require_tso(machine)


# --------------------------------------------------------------------------- descriptors


def test_descriptor_encoding() -> None:
    desc = Desc(0x1122334455667788, 1514, uapi.XDP_PKT_CONTD)
    raw = encode_desc(desc)
    assert raw == struct.pack("<QII", 0x1122334455667788, 1514, 1)
    assert len(raw) == DESC_SIZE == 16
    assert decode_desc(raw) == desc
    assert decode_desc(b"\xff" * 3 + raw, 3) == desc
    assert Desc(4096, 60).options == 0


def test_join_packets() -> None:
    frames = [RxFrame(Desc(0, 3, uapi.XDP_PKT_CONTD), b"abc"), RxFrame(Desc(4096, 2), b"de"),
              RxFrame(Desc(8192, 1), b"f")]
    assert join_packets(frames) == [b"abcde", b"f"]
    with pytest.raises(ValueError, match="incomplete"):
        join_packets(frames[:1])


# --------------------------------------------------------------------------- uapi values


def test_umem_reg_passes_the_smallest_layout_that_carries_it() -> None:
    plain = uapi.XdpUmemReg(addr=0x7F0000000000, len=1 << 22, chunk_size=4096)
    assert len(uapi.umem_reg_bytes(plain)) == uapi.XDP_UMEM_REG_V1_SIZE == 24
    assert uapi.umem_reg_bytes(plain) == struct.pack("<QQII", 0x7F0000000000, 1 << 22, 4096, 0)
    flagged = uapi.XdpUmemReg(addr=0, len=4096, chunk_size=2048,
                              flags=uapi.XDP_UMEM_UNALIGNED_CHUNK_FLAG)
    assert len(uapi.umem_reg_bytes(flagged)) == 32
    meta = uapi.XdpUmemReg(tx_metadata_len=16, flags=uapi.XDP_UMEM_TX_METADATA_LEN)
    assert uapi.umem_reg_bytes(meta)[28:32] == struct.pack("<I", 16)


def test_statistics_keep_the_length_the_kernel_filled() -> None:
    old, filled = uapi.XdpStatistics.parse(struct.pack("<3Q", 1, 2, 3))
    assert filled == 3 and (old.rx_dropped, old.tx_invalid_descs, old.rx_ring_full) == (1, 3, 0)
    new, filled = uapi.XdpStatistics.parse(struct.pack("<6Q", 1, 2, 3, 4, 5, 6))
    assert filled == 6 and new.tx_ring_empty_descs == 6
    for bad in (b"", b"\0" * 7, b"\0" * 56):
        with pytest.raises(ValueError):
            uapi.XdpStatistics.parse(bad)


def test_bind_flags_str() -> None:
    assert uapi.bind_flags_str(0) == "0"
    assert uapi.bind_flags_str(uapi.XDP_COPY | uapi.XDP_USE_NEED_WAKEUP) == \
        "XDP_COPY|XDP_USE_NEED_WAKEUP"
    assert uapi.bind_flags_str(uapi.XDP_SHARED_UMEM | 0x100) == "XDP_SHARED_UMEM|0x100"


def test_configs_validate_ring_sizes() -> None:
    with pytest.raises(ValueError):
        UmemConfig(fill_size=1000)
    with pytest.raises(ValueError):
        XskConfig(rx_size=3)
    with pytest.raises(ValueError, match="SHARED_UMEM"):
        XskConfig(bind_flags=uapi.XDP_SHARED_UMEM)
    assert XskConfig(tx_size=0).tx_size == 0
    assert UmemConfig(frame_count=16, frame_size=2048).size == 32768


# --------------------------------------------------------------------------- against C

STRUCTS: dict[type[ctypes.Structure], str] = {
    uapi.SockaddrXdp: "struct sockaddr_xdp",
    uapi.XdpRingOffset: "struct xdp_ring_offset",
    uapi.XdpMmapOffsets: "struct xdp_mmap_offsets",
    uapi.XdpUmemReg: "struct xdp_umem_reg",
    uapi.XdpStatistics: "struct xdp_statistics",
    uapi.XdpOptions: "struct xdp_options",
    uapi.XdpDesc: "struct xdp_desc",
}

#: Python value -> C expression; a name the installed header lacks is skipped (#ifdef)
CONSTANTS: dict[str, int] = {
    **{f"XDP_{m.name}": int(m) for m in uapi.SockOpt},
    **{f"XDP_{m.name}": int(m) for m in uapi.BindFlag},
    **{f"XDP_UMEM_{m.name}": int(m) for m in uapi.UmemFlag},
    **{f"XDP_FLAGS_{m.name}": int(m) for m in uapi.XdpAttachFlag},
    **{f"XDP_{m.name}": int(m) for m in uapi.XdpAction},
    **{name: int(getattr(uapi, name)) for name in (
        "XDP_RING_NEED_WAKEUP", "XDP_OPTIONS_ZEROCOPY", "XDP_PKT_CONTD", "XDP_TX_METADATA",
        "XDP_PGOFF_RX_RING", "XDP_PGOFF_TX_RING", "XDP_UMEM_PGOFF_FILL_RING",
        "XDP_UMEM_PGOFF_COMPLETION_RING", "XSK_UNALIGNED_BUF_OFFSET_SHIFT",
        "XSK_UNALIGNED_BUF_ADDR_MASK", "XDP_PACKET_HEADROOM")},
}
#: enum members (not macros): always present in the header
ENUM_CONSTANTS = {f"XDP_{m.name}" for m in uapi.XdpAction}

HEADER = Path("/usr/include/linux/if_xdp.h")


def _c_program() -> CFacts:
    facts = CFacts(["linux/if_xdp.h", "linux/if_link.h", "linux/bpf.h"])
    for cls, ctype in STRUCTS.items():
        facts.emit(f"sizeof {cls.__name__}", f"sizeof({ctype})")
        for fname, *_ in cls._fields_:
            facts.emit(f"{cls.__name__}.{fname}", f"offsetof({ctype}, {fname})")
    for name in CONSTANTS:
        facts.emit(name, name, if_defined=None if name in ENUM_CONSTANTS else name)
    return facts


@pytest.fixture(scope="module")
def c_facts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot compare with <linux/if_xdp.h>")
    if not HEADER.is_file():
        pytest.skip(f"{HEADER} is missing (linux-libc-dev not installed)")
    yield _c_program().run(tmp_path_factory.mktemp("xdpfacts"))


@pytest.mark.parametrize("cls", list(STRUCTS), ids=lambda c: c.__name__)
def test_struct_layout_matches_c(cls: type[ctypes.Structure], c_facts: dict[str, int]) -> None:
    assert ctypes.sizeof(cls) == c_facts[f"sizeof {cls.__name__}"]
    for fname, *_ in cls._fields_:
        assert getattr(cls, fname).offset == c_facts[f"{cls.__name__}.{fname}"], fname


def test_constants_match_c(c_facts: dict[str, int]) -> None:
    checked = [name for name in CONSTANTS if name in c_facts]
    assert len(checked) >= 30, f"only {checked} found in the headers"
    for name in checked:
        assert CONSTANTS[name] == c_facts[name], name
