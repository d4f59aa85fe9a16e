"""Machines reached over SSH (paramiko) as columns of the matrix: `--target ssh://...`.

- `spec`     the `ssh://[user@]host[:port]` syntax, and the column (`TargetKernel`) it makes
- `options`  SshOptions: how targets are reached and set up (from the pytest options)
- `connect`  ~/.ssh/config, host keys (known_hosts; unknown and changed keys refused),
             authentication, errors that say what to do
- `facts`    what the target is (kernel release, root, Python, its kernel config), asked
             once at session start: `resolve_targets` makes the columns
- `payload`  the files the agent needs there: the guest half of the checkout, the case
             folders, the Python distributions it imports, the BPF objects
- `sync`     sending them over SFTP into a per-user cache folder, only what changed
- `target`   `SshTarget`: the agent started over an SSH channel, the same protocol as over
             the VM's virtio-serial port (harness.targets.base.Target)

Nothing here is imported by the guest side; importing this package imports no paramiko.
"""
