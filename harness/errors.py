"""Typed errors (user mistakes, infrastructure failures) and the exit codes of every command.

The split matters for reporting: a `UserError` ends the run early with a message and exit
code 4 (nothing ran, fix your input); an `InfraError` is the harness or the machine failing
(a kernel that could not be fetched, built or booted, a guest that went silent) and is
reported as a JUnit *error*, never as a test *failure*; a failing assert inside the guest
is the only thing that is a failure.
"""

from __future__ import annotations

import enum
import shlex


class ExitCode(enum.IntEnum):
    """Exit codes of every kmatrix command: pytest's own, plus one for infrastructure.

    A CI job can tell a clean run (0) from failing cases (1), an interrupted run (2), a
    harness bug (3), bad input (4), an empty selection (5) and a machine that could not
    fetch, build or boot a kernel (6)."""

    OK = 0
    #: some cases failed (or crashed the guest)
    TESTS_FAILED = 1
    #: Ctrl-C / SIGTERM: partial reports written, nothing left running
    INTERRUPTED = 2
    #: a bug in kmatrix itself
    INTERNAL_ERROR = 3
    #: bad command line or input: a kernel spec, a fragment, a missing tool
    USAGE_ERROR = 4
    #: the selection matched no case
    NO_TESTS_COLLECTED = 5
    #: a kernel could not be fetched, built or booted, or a VM was lost
    INFRA_ERROR = 6


class KmatrixError(Exception):
    """Base of every error kmatrix raises on purpose."""

    #: one line telling the user what to do about it
    hint: str = ""
    #: what a command exits with when this error ends it
    exit_code: ExitCode = ExitCode.INTERNAL_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def describe(self) -> str:
        text = str(self)
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class UserError(KmatrixError):
    """The input is wrong: a bad kernel spec, a missing tool, a broken config fragment."""

    exit_code = ExitCode.USAGE_ERROR


class KernelSpecError(UserError):
    """A --kernel value that cannot be resolved to a bootable kernel."""


class MissingToolError(UserError):
    """A host tool is missing; `hint` names the package that provides it."""


class ConfigError(UserError):
    """A Kconfig fragment is malformed, or a requested option did not survive olddefconfig."""


class InfraError(KmatrixError):
    """The machinery failed: not the user's input, not the kernel under test's datapath."""

    exit_code = ExitCode.INFRA_ERROR


class CommandError(InfraError):
    """An external command exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        tail = "\n".join(output.strip().splitlines()[-20:])
        super().__init__(f"command failed (exit {returncode}): {shlex.join(argv)}\n{tail}")
        self.argv = argv
        self.returncode = returncode
        self.output = output


class BootError(InfraError):
    """The VM did not reach the guest agent: the kernel did not boot or panicked early."""

    def __init__(self, message: str, console_tail: str = "", hint: str = "") -> None:
        super().__init__(message, hint)
        self.console_tail = console_tail


class VMLostError(InfraError):
    """The guest stopped answering mid-run: it panicked, hung, or QEMU died."""

    def __init__(self, message: str, console_tail: str = "", panic: str = "") -> None:
        super().__init__(message)
        self.console_tail = console_tail
        self.panic = panic
