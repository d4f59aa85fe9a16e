"""Connecting to a target against a real sshd on loopback: host keys (unknown, accepted
once, changed), client keys (wrong, encrypted), and the facts asked at session start."""

from __future__ import annotations

import logging
from pathlib import Path

import paramiko
import pytest

from harness.targets.ssh.connect import (
    HostKeyChangedError,
    HostKeyUnknownError,
    SshAuthError,
    TargetUnreachableError,
    connect,
)
from harness.targets.ssh.facts import resolve_targets
from harness.targets.ssh.options import PASSWORD_ENV
from harness.targets.ssh.spec import SshSpec

from .loopback_sshd import ALIAS, Sshd, free_port


def test_unknown_host_key_is_refused_with_fingerprint_and_option(sshd: Sshd) -> None:
    with pytest.raises(HostKeyUnknownError) as info:
        connect(SshSpec.parse(sshd.url), sshd.options())
    text = info.value.describe()
    fingerprint = sshd.host_fingerprint()
    assert fingerprint.startswith("SHA256:")
    assert f"[127.0.0.1]:{sshd.port}" in text
    assert f"--accept-host-key {fingerprint}" in text
    assert info.value.fingerprint == fingerprint


def test_accepted_host_key_connects_once_without_saving(sshd: Sshd,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    options = sshd.options(accept_host_keys=frozenset({sshd.host_fingerprint()}))
    with caplog.at_level(logging.WARNING, "kmatrix.ssh"):
        client, params = connect(SshSpec.parse(f"ssh://{ALIAS}"), options)
    try:
        assert (params.hostname, params.port, params.user) == ("127.0.0.1", sshd.port, "root")
        _, out, _ = client.exec_command("echo hi")
        assert out.read() == b"hi\n"
    finally:
        client.close()
    assert "accepting the unknown" in caplog.text
    assert sshd.known_hosts.read_text() == ""  # accepted for this run only


def test_known_host_key_connects(sshd: Sshd) -> None:
    sshd.trust_host_key()
    client, _ = connect(SshSpec.parse(f"ssh://{ALIAS}"), sshd.options())
    client.close()


def test_changed_host_key_is_refused_loudly_even_if_accepted(sshd: Sshd) -> None:
    other = paramiko.ECDSAKey.generate()
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key_pub.split()[0]} "
                                f"{_ed25519_blob_of_other()}\n")
    options = sshd.options(accept_host_keys=frozenset({sshd.host_fingerprint(),
                                                       other.fingerprint}))
    with pytest.raises(HostKeyChangedError) as info:
        connect(SshSpec.parse(sshd.url), options)
    text = info.value.describe()
    assert "HAS CHANGED" in text
    assert sshd.host_fingerprint() in text
    assert "ssh-keygen -R" in text


def _ed25519_blob_of_other() -> str:
    """Another ed25519 public key (not the server's), as known_hosts writes it."""
    import base64
    import struct

    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    return base64.b64encode(field(b"ssh-ed25519") + field(bytes(range(32)))).decode()


def test_wrong_client_key_is_refused_clearly(sshd: Sshd, tmp_path: Path) -> None:
    sshd.trust_host_key()
    wrong = tmp_path / "wrong_key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(wrong))
    config = tmp_path / "ssh_config"
    config.write_text(sshd.ssh_config.read_text().replace(str(sshd.client_key), str(wrong)))
    with pytest.raises(SshAuthError) as info:
        connect(SshSpec.parse(sshd.url), sshd.options(ssh_config=config))
    text = info.value.describe()
    assert f"root@127.0.0.1:{sshd.port} refused the authentication" in text
    assert str(wrong) in text  # what was tried
    assert "authorized_keys" in text  # what to do


def test_passphrase_comes_from_the_environment_and_is_never_shown(
        sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    sshd.trust_host_key()
    secret = "s3cret-passphrase-xyz"
    key = paramiko.ECDSAKey.from_private_key_file(str(sshd.client_key))
    encrypted = tmp_path / "encrypted_key"
    key.write_private_key_file(str(encrypted), password=secret)
    config = tmp_path / "ssh_config"
    config.write_text(sshd.ssh_config.read_text().replace(str(sshd.client_key),
                                                          str(encrypted)))
    options = sshd.options(ssh_config=config)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SshAuthError) as info:  # no passphrase: refused, says why
            connect(SshSpec.parse(sshd.url), options)
        assert PASSWORD_ENV in info.value.describe()
        monkeypatch.setenv(PASSWORD_ENV, secret)
        client, _ = connect(SshSpec.parse(sshd.url), options)
        client.close()
        monkeypatch.setenv(PASSWORD_ENV, "wrong-" + secret)
        with pytest.raises(SshAuthError) as wrong:
            connect(SshSpec.parse(sshd.url), options)
    assert secret not in caplog.text
    assert secret not in wrong.value.describe()
    assert f"password: from {PASSWORD_ENV}" in wrong.value.describe()


def test_nothing_listening_is_unreachable(sshd: Sshd) -> None:
    with pytest.raises(TargetUnreachableError):
        connect(SshSpec.parse(f"ssh://root@127.0.0.1:{free_port()}"), sshd.options())


def test_resolve_labels_the_column_by_host_and_running_kernel(sshd: Sshd,
                                                              tmp_path: Path) -> None:
    import os

    sshd.trust_host_key()
    taken = {"debian-6.12"}
    first, second = resolve_targets([sshd.url, sshd.url], sshd.options(), taken,
                                    tmp_path / "results")
    release = os.uname().release
    assert first.label == f"127.0.0.1-{release}"
    assert second.label == f"127.0.0.1-{release}-2"  # unique columns
    assert first.release == release and first.series is not None
    assert first.spec == sshd.url and first.user == "root" and not first.sudo
    assert first.python and first.cpus > 0
    config = Path(f"/boot/config-{release}")
    if config.is_file():
        assert first.config is not None and first.config.read_bytes() == config.read_bytes()
