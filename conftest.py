"""Project-wide pytest configuration.

The kmatrix plugin comes in through the `pytest11` entry point (harness.pytest_plugin) on
the host and as `-p harness.guest.plugin` in the guest; here we only make the guest-side
fixtures (namespaces, veth pairs, BPF objects; `stack_counters`, the stack's counters and
drop reasons since the case's setup) visible to cases/.
"""

pytest_plugins = ["harness.guest.fixtures", "harness.guest.evidence.fixture"]
