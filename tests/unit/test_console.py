"""Kernel problem detection on saved real console logs and dmesg records."""

from pathlib import Path

from harness import kernel_log as console
from harness.kernel_log import Severity

DATA = Path(__file__).parent / "data"


def test_panic_log_from_sysrq() -> None:
    text = (DATA / "console-panic-sysrq.log").read_text()
    report = console.panic_report(text)
    assert "Kernel panic - not syncing" in report
    assert "sysrq" in report.lower()
    worst = console.worst(console.find_problems(text.splitlines()))
    assert worst is not None and worst.severity is Severity.PANIC


def test_clean_boot_has_no_problems() -> None:
    text = (DATA / "console-clean-boot.log").read_text()
    assert console.find_problems(text.splitlines()) == []
    assert console.panic_report(text) == ""


def test_warn_and_bug_lines() -> None:
    lines = [
        "[   12.000000] ------------[ cut here ]------------",
        "[   12.000001] WARNING: CPU: 1 PID: 321 at net/core/dev.c:1234 foo+0x12/0x40",
        "[   12.000002] Call Trace:",
        "[   12.000003] ---[ end trace 0000000000000000 ]---",
        "[   13.000000] BUG: KASAN: slab-out-of-bounds in bar+0x1/0x2",
        "[   14.000000] refcount_t: underflow; use-after-free.",
    ]
    problems = console.find_problems(lines)
    assert [p.severity for p in problems] == [Severity.WARN, Severity.BUG, Severity.BUG]
    assert problems[0].text.endswith("---[ end trace 0000000000000000 ]---")


def test_kmsg_record() -> None:
    from harness.guest.kmsg import kmsg_message

    assert kmsg_message("4,123,456789,-;WARNING: CPU: 0 PID: 1 at x\n") == (
        "WARNING: CPU: 0 PID: 1 at x")


def test_ordinary_lines_are_not_problems() -> None:
    for line in ["[ 1.0] ata3.00: LPM support broken, forcing max_power",
                 "[ 2.0] hpet: Lost 1 RTC interrupts", "[ 3.0] Invalid ELF header magic: != ELF",
                 "[ 4.0] reboot: Power down"]:
        assert console.classify(line) is None


def test_root_mount_failure_is_named() -> None:
    text = ("[    2.1] Run /init as init process\n"
            "[    2.5] mount: mounting /dev/root on /newroot failed: No such device\n"
            "[    2.6] Kernel panic - not syncing: Attempted to kill init!\n")
    assert console.root_mount_failure(text) == (
        "mount: mounting /dev/root on /newroot failed: No such device")
    assert console.root_mount_failure("[ 1.0] Linux version 6.12\n") == ""
