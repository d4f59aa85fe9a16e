"""Code that runs inside the booted guest kernel; it imports nothing of the host side.

The guest sees the host's root filesystem read-only over 9p (virtme-ng), so it runs the same
Python, the same .venv and the same checkout as the host; /tmp, /etc, /var ... are private
tmpfs overlays. Cases in cases/ are ordinary pytest tests whose bodies run here, as root, in
the kernel under test. They use:

- `harness.guest.bpf`       thin typed ctypes layer over the system libbpf (>= 1.4), and
                            `object_path(name)` of the objects the host compiled
- `harness.guest.probes`    feature probes (`probe(name) -> ProbeResult`), run by trying
- `harness.guest.net`       namespaces, devices, veth, netkit, netdev genl, sockets, packets
- `harness.guest.fixtures`  pytest fixtures (namespaces, veth pairs, BPF objects)
- `harness.guest.wait`      deadlines and unique names

The agent (`agent`) serves the host; `plugin` is the guest's pytest plugin; `environment`
says what the host passed in (KMATRIX_GUEST=1, the cache, the BPF object folder).
"""
