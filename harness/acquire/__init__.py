"""Acquire: a kernel spec becomes a bootable `Kernel` (a Debian package fetched and
extracted, a source tree or tarball configured from kconfigs/ and built, or a path).

- `spec`     the one syntax of `--kernel` (resolve, resolve_all, absolute_spec)
- `kernel`   the resolved Kernel every later stage works with
- `debian`   Debian kernel packages, via `apt` (the one reader of apt's lists)
- `sources`  kernel sources and their identity
- `kconfig`  fragments, merge, verify
- `build`    plan, toolchain, make, builder, cache
"""
