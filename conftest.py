"""Project-wide pytest configuration.

The kmatrix plugin itself comes in through the `pytest11` entry point (harness.plugin); here
we only make the guest-side fixtures (namespaces, veth pairs, BPF objects) visible to cases/.
"""

pytest_plugins = ["harness.guest.fixtures"]
