"""What the verifier accepts and refuses in arena programs (6.9+), after the kernel
selftests' progs/verifier_arena.c and verifier_arena_large.c: each program is loaded on
its own (the object's other programs are not), accepted ones are run where they can be
(they return 0 when every step held), refused ones must fail with the verifier's own
message, read from the log libbpf attaches to the load error.

Objects: bpf/arena_alloc.bpf.c (the allocation sequences) and bpf/arena_verifier.bpf.c.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from harness.guest import bpf as lb
from harness.guest.bpf import arena as ar

pytestmark = pytest.mark.requires("arena")

#: (object, program, run it): programs the verifier must accept
ACCEPTED = [
    ("arena_alloc", "alloc_sequence", True),
    ("arena_alloc", "alloc_neighbours", True),
    ("arena_alloc", "alloc_whole", True),
    ("arena_alloc", "arena_op", False),
    ("arena_verifier", "subprog_arena_arg", True),
    ("arena_verifier", "iter_alloc_any_map", False),
]

#: program of bpf/arena_verifier.bpf.c -> what the verifier's log must say (one of; the
#: selftest matches the register state "untrusted_ptr_bpf_map" for the second). Newer
#: kernels name the register instead of the argument and add hints after the error
#: (seen on 7.3), so the whole log is searched, not its last line only.
REFUSED: dict[str, tuple[str, ...]] = {
    "iter_seq_as_map": ("kernel function bpf_arena_alloc_pages args#0 expected pointer to "
                        "STRUCT bpf_map but R1 has a pointer to STRUCT seq_file",
                        "kernel function bpf_arena_alloc_pages R1 expected pointer to STRUCT "
                        "bpf_map but R1 has a pointer to STRUCT seq_file"),
    "iter_untrusted_map": ("R1 must be referenced or trusted", "untrusted_ptr_bpf_map"),
    "cast_without_arena": ("addr_space_cast insn can only be used in a program that has an "
                           "associated arena",),
    "cast_bad_space": ("addr_space_cast insn can only convert between address space 1 and "
                       "0",),
    "arena_ptr_to_helper": ("R2 type=arena expected=",),
}


@pytest.mark.parametrize("name,prog,run", ACCEPTED, ids=[p for _, p, _ in ACCEPTED])
def test_accepted(name: str, prog: str, run: bool) -> None:
    """The verifier accepts the program; those that can run do, and every step held."""
    with lb.BpfObject(lb.object_path(name), autoload=[prog]) as obj:
        program = obj.program(prog)
        assert program.fd >= 0
        if run:
            assert ar.run_syscall(program) == 0, f"{prog}: a step did not hold"


@pytest.mark.parametrize("prog", list(REFUSED))
def test_refused(prog: str, record_property: Callable[[str, object], None]) -> None:
    """The verifier refuses the program, with its message naming why."""
    with pytest.raises(OSError) as exc:
        lb.BpfObject(lb.object_path("arena_verifier"), autoload=[prog]).close()
    message = ar.verifier_message(str(exc.value))
    record_property("observed", f"{lb.errno_name(exc.value.errno or 0)}: {message}")
    log = str(exc.value)
    assert exc.value.errno in (errno.EINVAL, errno.EACCES), log
    assert any(want in log for want in REFUSED[prog]), f"verifier said:\n{log[-3000:]}"
