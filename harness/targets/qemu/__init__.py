"""A kernel booted under QEMU by virtme-ng: accelerator choice (`accel`), the VM and its
control channel (`vm`), when a boot counts as stuck (`boot_clock`)."""
