"""Code that runs inside the booted guest kernel.

The guest sees the host's root filesystem read-only over 9p (virtme-ng), so it runs the same
Python, the same .venv and the same checkout as the host; /tmp, /etc, /var ... are private
tmpfs overlays. Cases in cases/ are ordinary pytest tests whose bodies run here, as root, in
the kernel under test. They use:

- `harness.guest.libbpf`   - thin typed ctypes layer over the system libbpf (>= 1.4)
- `harness.guest.probes`   - feature probes (`probe(name) -> ProbeResult`), run by trying
- `harness.guest.fixtures` - namespaces, veth pairs, BPF objects (pytest fixtures)
- `harness.bpfobj`         - path of a compiled object from bpf/ (built on the host, cached)

The environment variable KMATRIX_GUEST=1 marks a guest-side pytest session; the kmatrix
pytest plugin then acts as the guest plugin (requires-marker skips, no kernel matrix).
"""
