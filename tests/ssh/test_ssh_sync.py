"""The SFTP sync against a real sshd: the second sync sends nothing, then only what
changed; what left the set is deleted; nothing outside the managed folders is touched."""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness.targets.ssh.connect import connect
from harness.targets.ssh.spec import SshSpec
from harness.targets.ssh.sync import sync

from .loopback_sshd import Sshd


def _tree(root: Path) -> dict[str, Path]:
    files = {"checkout/a.py": "a = 1\n", "checkout/pkg/__init__.py": "",
             "checkout/pkg/b.py": "b = 2\n", "site/dep/c.py": "c = 3\n" * 1000}
    out = {}
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[rel] = path
    return out


def test_sync_sends_only_what_changed(sshd: Sshd, tmp_path: Path) -> None:
    sshd.trust_host_key()
    local = _tree(tmp_path / "local")
    remote = tmp_path / "remote"
    (remote / "tmp").mkdir(parents=True)
    (remote / "tmp" / "keep").write_text("not managed")
    client, _ = connect(SshSpec.parse(sshd.url), sshd.options())
    try:
        with client.open_sftp() as sftp:
            first = sync(sftp, str(remote), local, ("checkout", "site"))
            assert sorted(first.sent) == sorted(local) and first.unchanged == 0
            for rel, path in local.items():
                assert (remote / rel).read_bytes() == path.read_bytes()
                assert int((remote / rel).stat().st_mtime) == int(path.stat().st_mtime)

            second = sync(sftp, str(remote), local, ("checkout", "site"))
            assert second.sent == [] and second.deleted == []
            assert second.unchanged == len(local)

            # one file changes (same size: the time tells), one leaves the set
            changed = local["checkout/pkg/b.py"]
            changed.write_text("b = 3\n")
            later = time.time() + 5
            os.utime(changed, (later, later))
            gone = local.pop("checkout/a.py")
            (remote / "checkout/pkg/__pycache__").mkdir()  # the agent's Python may write it
            third = sync(sftp, str(remote), local, ("checkout", "site"))
            assert third.sent == ["checkout/pkg/b.py"]
            assert third.deleted == ["checkout/a.py"]
            assert (remote / "checkout/pkg/b.py").read_text() == "b = 3\n"
            assert not (remote / "checkout/a.py").exists() and gone.exists()

            # a whole folder leaves the set: its files and the emptied folder go
            for rel in [r for r in local if r.startswith("site/")]:
                del local[rel]
            fourth = sync(sftp, str(remote), local, ("checkout", "site"))
            assert fourth.deleted == ["site/dep/c.py"] and fourth.sent == []
            assert not (remote / "site/dep").exists()
    finally:
        client.close()
    assert (remote / "tmp" / "keep").read_text() == "not managed"
    assert not list(remote.rglob("*.kmatrix-part"))
