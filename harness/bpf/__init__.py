"""Host side of BPF: compile bpf/*.bpf.c into the object cache (`compile`). The guest side,
loading and attaching, is `harness.guest.bpf`."""
