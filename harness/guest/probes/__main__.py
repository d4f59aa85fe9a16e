"""`python -m harness.guest.probes`: the probe table of the running kernel."""

from . import main

main()
