"""harness.guest.bpf.shared with a fake BpfObject (no kernel): the agent loads a shared
object once, remembers a failed load, and a case takes the agent's object without closing
it or, where the agent holds none, loads and closes its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from harness.guest.bpf import shared


class FakeObject:
    made: list[FakeObject] = []  # noqa: RUF012 (a test's record)
    tried: list[str] = []  # noqa: RUF012

    def __init__(self, path: Path) -> None:
        FakeObject.tried.append(path.name)
        if path.name.startswith("broken"):
            raise OSError(22, f"load {path.name}: verifier said no")
        self.path = path
        self.closed = False
        FakeObject.made.append(self)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeObject:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@pytest.fixture(autouse=True)
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(shared, "BpfObject", FakeObject)
    monkeypatch.setattr(shared, "object_path", lambda name: Path(f"/objs/{name}.bpf.o"))
    monkeypatch.setattr(shared, "_LOADED", {})
    monkeypatch.setattr(shared, "_FAILED", set())
    FakeObject.made, FakeObject.tried = [], []
    yield


def test_preload_once_and_failures_remembered() -> None:
    assert shared.preload(["redir", "broken_one"]) is True
    assert shared.preload(["redir", "broken_one"]) is False  # tried already: no new baseline
    assert [o.path.name for o in FakeObject.made] == ["redir.bpf.o"]
    assert FakeObject.tried == ["redir.bpf.o", "broken_one.bpf.o"]  # each tried once


def test_case_takes_the_agents_object_and_leaves_it_open() -> None:
    shared.preload(["redir"])
    with shared.shared_object("redir") as obj:
        assert obj is FakeObject.made[0]  # type: ignore[comparison-overlap]
    assert not FakeObject.made[0].closed  # the next case process inherits it
    shared.close_all()
    assert FakeObject.made[0].closed


def test_case_without_the_agents_object_loads_and_closes_its_own() -> None:
    shared.preload(["broken_one"])
    with shared.shared_object("other") as obj:
        assert obj is FakeObject.made[0]  # type: ignore[comparison-overlap]
        assert not FakeObject.made[0].closed
    assert FakeObject.made[0].closed
    with pytest.raises(OSError, match="verifier said no"), \
            shared.shared_object("broken_one"):
        pass  # the case meets the load's failure itself
