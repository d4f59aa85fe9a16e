"""Typed errors: user mistakes, infrastructure failures, and what each asks the user to do.

The split matters for reporting: a `UserError` ends the run early with a message and exit
code 2 (nothing ran, fix your input); an `InfraError` is the harness or the machine failing
(a VM that did not boot, a guest that went silent) and is reported as a JUnit *error*, never
as a test *failure*; a failing assert inside the guest is the only thing that is a failure.
"""

from __future__ import annotations


class KmatrixError(Exception):
    """Base of every error kmatrix raises on purpose."""

    #: one line telling the user what to do about it
    hint: str = ""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def describe(self) -> str:
        text = str(self)
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class UserError(KmatrixError):
    """The input is wrong: a bad kernel spec, a missing tool, a broken config fragment."""


class KernelSpecError(UserError):
    """A --kernel value that cannot be resolved to a bootable kernel."""


class MissingToolError(UserError):
    """A host tool is missing; `hint` names the package that provides it."""


class ConfigError(UserError):
    """A Kconfig fragment is malformed, or a requested option did not survive olddefconfig."""


class InfraError(KmatrixError):
    """The machinery failed: not the user's input, not the kernel under test's datapath."""


class CommandError(InfraError):
    """An external command exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        from .runner import format_argv

        tail = "\n".join(output.strip().splitlines()[-20:])
        super().__init__(f"command failed (exit {returncode}): {format_argv(argv)}\n{tail}")
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
