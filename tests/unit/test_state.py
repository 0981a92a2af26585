"""pallet.runtime.state: ids, the status derived from pid + start time, the verb table."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pallet.errors import Conflict, InvalidArgument, InvalidState, NotFound
from pallet.linux import proc
from pallet.runtime import state


@pytest.mark.parametrize("cid", ["a", "abc-123", "A_b.c+d", "x" * 1024, "0", "ctr.1"])
def test_check_id_accepts_plain_names(cid: str) -> None:
    state.check_id(cid)


@pytest.mark.parametrize("cid", [
    "", ".", "..", "../x", "a/b", "/abs", "-flag", ".hidden", "a b", "a\nb", "x" * 1025,
    "caf\u00e9", "a\x00b", "a:b", "a*",
])
def test_check_id_refuses_paths_and_oddities(cid: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid container id format"):
        state.check_id(cid)


def test_allowed_table() -> None:
    a = state.ALLOWED
    assert a["start"] == (state.CREATED,)
    assert a["delete"] == (state.STOPPED,)
    assert a["pause"] == (state.RUNNING,)
    assert a["resume"] == (state.PAUSED,)
    assert set(a["kill"]) == {state.CREATED, state.RUNNING, state.PAUSED}
    assert state.STOPPED not in a["exec"] and state.PAUSED not in a["exec"]
    for verb, statuses in a.items():
        assert state.CREATING not in statuses, verb
        assert set(statuses) <= {state.CREATED, state.RUNNING, state.PAUSED, state.STOPPED}


def my_start_time() -> int:
    started = proc.start_time(os.getpid())
    assert started is not None
    return started


def container(tmp_path: Path, **data: object) -> state.Container:
    ctr = state.new(str(tmp_path / "root"), "c1", dict(data))
    return ctr


def test_status_live_pid_and_matching_start_time_is_running(tmp_path: Path) -> None:
    ctr = container(tmp_path, pid=os.getpid(), pidStartTime=my_start_time())
    assert ctr.status() == state.RUNNING
    assert ctr.oci_state()["pid"] == os.getpid()


def test_status_live_pid_with_another_start_time_is_stopped(tmp_path: Path) -> None:
    # The pid was reused by some other process: it is not the container.
    ctr = container(tmp_path, pid=os.getpid(), pidStartTime=my_start_time() - 1)
    assert ctr.status() == state.STOPPED
    st = ctr.oci_state()
    assert st["status"] == state.STOPPED and st["pid"] == 0


@pytest.mark.parametrize("data", [
    {},
    {"pid": 0, "pidStartTime": 1},
    {"pid": os.getpid()},  # no start time recorded
    {"pid": os.getpid(), "pidStartTime": "123"},
    {"pid": "1", "pidStartTime": 1},
])
def test_status_without_a_verifiable_pid_is_stopped(tmp_path: Path, data: dict[str, object]
                                                    ) -> None:
    assert container(tmp_path, **data).status() == state.STOPPED


def test_status_of_a_zombie_is_stopped(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    try:
        while proc.state(pid) != "Z":
            os.sched_yield()
        started = proc.start_time(pid)
        assert started is not None
        assert container(tmp_path, pid=pid, pidStartTime=started).status() == state.STOPPED
    finally:
        os.waitpid(pid, 0)


def test_status_with_exec_fifo_is_created(tmp_path: Path) -> None:
    ctr = container(tmp_path, pid=os.getpid(), pidStartTime=my_start_time())
    os.mkfifo(os.path.join(ctr.dir, state.EXEC_FIFO))
    assert ctr.status() == state.CREATED
    assert ctr.require("start") == state.CREATED
    with pytest.raises(InvalidState) as info:
        ctr.require("pause")
    assert info.value.state == state.CREATED and info.value.op == "pause"
    assert "cannot pause container c1: container is created" in str(info.value)


def test_status_frozen_is_paused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctr = container(tmp_path, pid=os.getpid(), pidStartTime=my_start_time(),
                    cgroupPaths={"freezer": "/nonexistent"})
    monkeypatch.setattr(state.Container, "frozen", lambda self: True)
    assert ctr.status() == state.PAUSED
    assert ctr.require("resume") == state.PAUSED
    monkeypatch.setattr(state.Container, "frozen", lambda self: False)
    assert ctr.status() == state.RUNNING


def test_frozen_is_not_consulted_without_cgroup_paths(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: state.Container) -> bool:
        raise AssertionError("frozen() called")

    monkeypatch.setattr(state.Container, "frozen", boom)
    assert container(tmp_path, pid=os.getpid(), pidStartTime=my_start_time()).status() == \
        state.RUNNING


def test_require_names_verb_id_and_status(tmp_path: Path) -> None:
    ctr = container(tmp_path)
    assert ctr.require("delete") == state.STOPPED
    with pytest.raises(InvalidState) as info:
        ctr.require("exec")
    assert str(info.value) == "cannot exec container c1: container is stopped, not running"
    with pytest.raises(InvalidState, match="cannot start container c1: container is stopped"):
        ctr.require("start")


def test_new_save_load_round_trip(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    ctr = state.new(root, "c1", {"id": "c1", "bundle": "/b", "pid": 42,
                                 "config": {"annotations": {"k": "v"}}})
    assert os.stat(ctr.dir).st_mode & 0o777 == 0o700
    ctr.save()
    again = state.load(root, "c1")
    assert again.data == ctr.data
    assert again.pid == 42 and again.bundle == "/b" and again.annotations == {"k": "v"}
    assert again.cgroup_paths == {}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", str(again.data["created"]))
    assert state.list_ids(root) == ["c1"]
    assert again.oci_state() == {"ociVersion": state.OCI_VERSION, "id": "c1",
                                 "status": "stopped", "pid": 0, "bundle": "/b",
                                 "annotations": {"k": "v"}}


def test_new_refuses_a_duplicate_and_a_bad_id(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    state.new(root, "c1", {})
    with pytest.raises(Conflict, match="container with id exists: c1"):
        state.new(root, "c1", {})
    with pytest.raises(InvalidArgument):
        state.new(root, "../x", {})
    assert os.listdir(root) == ["c1"]
    assert not (tmp_path / "x").exists()


def test_load_missing_and_bad_ids(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    with pytest.raises(NotFound, match="container does not exist: nope"):
        state.load(root, "nope")
    state.new(root, "reserved", {})  # a dir without state.json: still being created
    with pytest.raises(NotFound):
        state.load(root, "reserved")
    assert state.list_ids(root) == []
    with pytest.raises(InvalidArgument):
        state.load(root, "../../etc")
    assert state.list_ids(str(tmp_path / "missing")) == []


def test_load_of_a_corrupt_state_file(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    ctr = state.new(root, "c1", {})
    Path(ctr.dir, state.STATE_FILE).write_text("[1, 2]")
    with pytest.raises(InvalidState, match="corrupt state file"):
        state.load(root, "c1")


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    state.write_atomic(str(target), b"one", 0o640)
    state.write_atomic(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]


def test_remove_dir(tmp_path: Path) -> None:
    ctr = container(tmp_path)
    ctr.save()
    os.mkfifo(os.path.join(ctr.dir, state.EXEC_FIFO))
    state.remove_dir(ctr.dir)
    assert not os.path.exists(ctr.dir)
    state.remove_dir(ctr.dir)  # already gone: fine


def test_lock_is_exclusive(tmp_path: Path) -> None:
    import fcntl

    ctr = container(tmp_path)
    fd = ctr.lock()
    try:
        other = os.open(ctr.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    finally:
        os.close(fd)


def test_rfc3339() -> None:
    assert state.rfc3339(0.5) == "1970-01-01T00:00:00.500000000Z"
