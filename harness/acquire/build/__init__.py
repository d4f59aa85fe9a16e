"""Kernels built from source: plan (source, merged config, keys), toolchain, make, the cache.

- `plan`       source spec + fragments -> BuildPlan (keys decided before any compiler runs)
- `toolchain`  compiler identity and the tools/headers a build needs
- `make`       make in a kept O= folder: allnoconfig + fragments + olddefconfig, progress
- `builder`    build() (or a cache hit) -> a bootable Kernel
- `cache`      the content-addressed cache of built kernels: list, prune
"""
