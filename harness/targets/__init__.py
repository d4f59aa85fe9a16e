"""Where cases run: `qemu` (a virtme-ng VM per kernel) today."""
