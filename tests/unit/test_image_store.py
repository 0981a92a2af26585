"""The content store on real files: verification, resume, concurrency, prune, crash litter."""

from __future__ import annotations

import fcntl
import hashlib
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier as MpBarrier
from typing import Any

import pytest

from pallet.errors import InvalidArgument, InvalidState, NotFound, NotSupported
from pallet.image.digest import Digest
from pallet.image.store import ContentStore, Ingest

BIG = 3 * 1024 * 1024 + 123  # several chunks, odd length
CHUNK = 64 * 1024


def blob(seed: int, n: int = BIG) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def files_under(path: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs
    )


def ingest_all(ing: Ingest, data: bytes, start: int = 0) -> None:
    for i in range(start, len(data), CHUNK):
        ing.write(data[i : i + CHUNK])


@pytest.fixture
def store(tmp_path: Any) -> ContentStore:
    return ContentStore(str(tmp_path / "store"))


# -- write, read, verify -------------------------------------------------------------------


def test_write_read_verify(store: ContentStore) -> None:
    data = b'{"schemaVersion": 2}'
    d = store.write_bytes(data)
    assert str(d) == sha(data)
    assert d == Digest.of_bytes(data)
    assert store.exists(d)
    assert store.size(d) == len(data)
    assert store.read(d) == data
    with store.open(d) as f:
        assert f.read() == data
    assert store.path(d) == os.path.join(store.root, "blobs", "sha256", d.hex)
    assert store.verify(d)
    assert list(store.list()) == [d]
    # Again, and with the right expectation: a no-op that returns the same digest.
    assert store.write_bytes(data) == d
    assert store.write_bytes(data, expected=d) == d
    assert files_under(store.root) == [f"blobs/sha256/{d.hex}"]


def test_missing_blob_is_not_found(store: ContentStore) -> None:
    d = Digest.of_bytes(b"never written")
    assert not store.exists(d)
    for op in (store.path, store.size, store.open, store.read, store.delete, store.verify):
        with pytest.raises(NotFound, match=d.hex):
            op(d)


def test_delete(store: ContentStore) -> None:
    d = store.write_bytes(b"bye")
    store.delete(d)
    assert not store.exists(d)
    assert list(store.list()) == []
    with pytest.raises(NotFound):
        store.delete(d)


def test_verify_detects_corruption(store: ContentStore) -> None:
    d = store.write_bytes(blob(1, 5000))
    with open(store.path(d), "r+b") as f:
        f.seek(4000)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    assert not store.verify(d)


def test_mismatch_rejected_and_nothing_left(store: ContentStore) -> None:
    data, other = b"layer bytes", b"what the registry claimed"
    with pytest.raises(InvalidArgument) as err:
        store.write_bytes(data, expected=Digest.of_bytes(other))
    assert str(err.value) == f"digest mismatch: expected {sha(other)} got {sha(data)}"
    assert files_under(store.root) == []
    assert not store.exists(Digest.of_bytes(data))


def test_ingest_mismatch_stores_nothing(store: ContentStore) -> None:
    data, lie = blob(2), blob(3)
    with store.ingest(Digest.of_bytes(lie), len(lie)) as ing:
        ingest_all(ing, data)
        with pytest.raises(InvalidArgument, match="digest mismatch"):
            ing.commit()
    assert files_under(store.root) == []


# -- streaming and resume ------------------------------------------------------------------


def test_ingest_streams_and_commits(store: ContentStore) -> None:
    data = blob(4)
    d = Digest.of_bytes(data)
    with store.ingest(d, len(data)) as ing:
        assert ing.offset == 0
        ingest_all(ing, data)
        assert ing.offset == len(data)
        assert ing.commit() == d
    assert store.read(d) == data
    assert files_under(store.root) == [f"blobs/sha256/{d.hex}"]
    with pytest.raises(InvalidState):
        ing.write(b"late")


def test_resume_interrupted_ingest(store: ContentStore) -> None:
    data = blob(5)
    d = Digest.of_bytes(data)
    half = len(data) // 2
    ing = store.ingest(d, len(data))
    ing.write(data[:half])
    ing.abort(keep_partial=True)
    assert not store.exists(d)
    assert list(store.list()) == []

    ing = store.ingest(d, len(data))
    assert ing.offset == half  # where an HTTP Range request would start
    ing.write(data[half:])
    assert ing.commit() == d
    assert store.read(d) == data
    assert files_under(store.root) == [f"blobs/sha256/{d.hex}"]


def test_exception_in_context_keeps_partial(store: ContentStore) -> None:
    data = blob(6)
    d = Digest.of_bytes(data)
    with pytest.raises(ConnectionResetError), store.ingest(d, len(data)) as ing:
        ing.write(data[:1000])
        raise ConnectionResetError("cut")
    with store.ingest(d, len(data)) as ing:
        assert ing.offset == 1000
        ingest_all(ing, data, start=1000)
        ing.commit()
    assert store.verify(d)


def test_abort_discarding_partial(store: ContentStore) -> None:
    data = blob(7, 10_000)
    d = Digest.of_bytes(data)
    ing = store.ingest(d, len(data))
    ing.write(data[:5000])
    ing.abort(keep_partial=False)
    ing.abort(keep_partial=False)  # idempotent
    assert files_under(store.root) == []
    assert store.ingest(d, len(data)).offset == 0


def test_corrupted_partial_detected_at_commit(store: ContentStore) -> None:
    data = blob(8)
    d = Digest.of_bytes(data)
    half = len(data) // 2
    ing = store.ingest(d, len(data))
    ing.write(data[:half])
    ing.abort(keep_partial=True)
    with open(os.path.join(store.root, "ingest", d.hex), "r+b") as f:
        f.seek(half // 3)
        f.write(b"bitrot")

    ing = store.ingest(d, len(data))
    assert ing.offset == half
    ing.write(data[half:])
    with pytest.raises(InvalidArgument, match=f"expected {d}"):
        ing.commit()
    assert not store.exists(d)
    assert files_under(store.root) == []  # the bad partial is gone: next try starts over
    assert store.ingest(d, len(data)).offset == 0


def test_size_is_enforced(store: ContentStore) -> None:
    data = blob(9, 10_000)
    d = Digest.of_bytes(data)
    ing = store.ingest(d, 4000)
    with pytest.raises(InvalidArgument, match="longer than its size"):
        ing.write(data[:5000])
    assert files_under(store.root) == []

    # Short at commit: refused, but the prefix stays for a resume.
    ing = store.ingest(d, len(data))
    ing.write(data[:3000])
    with pytest.raises(InvalidArgument, match="short"):
        ing.commit()
    assert not store.exists(d)
    with store.ingest(d, len(data)) as ing:
        assert ing.offset == 3000
        ing.write(data[3000:])
        ing.commit()
    assert store.read(d) == data


def test_partial_longer_than_size_starts_over(store: ContentStore) -> None:
    data = blob(10, 10_000)
    d = Digest.of_bytes(data)
    with open(os.path.join(store.root, "ingest", d.hex), "wb") as f:
        f.write(b"x" * 20_000)
    with store.ingest(d, len(data)) as ing:
        assert ing.offset == 0
        ing.write(data)
        ing.commit()
    assert store.verify(d)


def test_second_ingest_of_a_busy_digest_writes_privately(store: ContentStore) -> None:
    data = blob(11)
    d = Digest.of_bytes(data)
    first = store.ingest(d, len(data))
    first.write(data[:100_000])
    second = store.ingest(d, len(data))
    assert first.resumable and not second.resumable
    assert second.offset == 0
    ingest_all(second, data)
    assert second.commit() == d
    first.write(data[100_000:])
    assert first.commit() == d  # lands the same bytes again: harmless
    assert store.read(d) == data
    assert files_under(store.root) == [f"blobs/sha256/{d.hex}"]


def test_claim_never_resumes_a_file_committed_under_it(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(16)
    d = Digest.of_bytes(data)
    first = store.ingest(d, len(data))
    ingest_all(first, data)
    real_flock = fcntl.flock
    committed: list[Digest] = []

    def flock_after_racing_commit(fd: int, op: int) -> None:
        # The first writer commits between the second's open() and its flock(): the
        # second then locks a file that is now the published blob, and must notice.
        if not committed:
            committed.append(first.commit())
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock_after_racing_commit)  # the store calls fcntl.flock
    with store.ingest(d, len(data)) as second:
        assert committed == [d]
        assert second.resumable and second.offset == 0  # a fresh partial, not the blob
        ingest_all(second, data)
        second.commit()
    _assert_one_intact_blob(store, data)


def test_ingest_of_an_existing_blob(store: ContentStore) -> None:
    data = blob(12, 5000)
    d = store.write_bytes(data)
    with store.ingest(d, len(data)) as ing:
        ing.write(data)
        assert ing.commit() == d
    assert store.verify(d)
    assert list(store.list()) == [d]


# -- concurrency ---------------------------------------------------------------------------


def _ingest_worker(root: str, seed: int, use_write_bytes: bool, barrier: Any) -> str:
    data = blob(seed)
    d = Digest.of_bytes(data)
    st = ContentStore(root)
    barrier.wait(timeout=30)
    if use_write_bytes:
        return str(st.write_bytes(data, expected=d))
    with st.ingest(d, len(data)) as ing:
        for i in range(ing.offset, len(data), CHUNK):
            ing.write(data[i : i + CHUNK])
            if i % (8 * CHUNK) == 0:
                time.sleep(0)  # let the others interleave
        return str(ing.commit())


def _process_worker(
    root: str, seed: int, use_write_bytes: bool, barrier: MpBarrier, out: Any
) -> None:
    try:
        out.put(_ingest_worker(root, seed, use_write_bytes, barrier))
    except BaseException as exc:
        out.put(f"error: {exc!r}")


def _assert_one_intact_blob(store: ContentStore, data: bytes) -> None:
    d = Digest.of_bytes(data)
    assert list(store.list()) == [d]
    assert store.read(d) == data
    assert store.verify(d)
    assert files_under(store.root) == [f"blobs/sha256/{d.hex}"]


def test_concurrent_ingests_from_threads(store: ContentStore) -> None:
    n = 8
    barrier = threading.Barrier(n)
    results: list[str] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results.append(_ingest_worker(store.root, 13, i % 4 == 3, barrier))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert results == [sha(blob(13))] * n
    _assert_one_intact_blob(store, blob(13))


def test_concurrent_ingests_from_processes(store: ContentStore) -> None:
    n = 6
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(store.root, 14, i % 3 == 2, barrier, out))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=60) for _ in range(n)]
    finally:
        for p in procs:
            p.join(30)
    assert [p.exitcode for p in procs] == [0] * n
    assert results == [sha(blob(14))] * n
    _assert_one_intact_blob(store, blob(14))


def _die_mid_ingest(root: str, seed: int) -> None:
    data = blob(seed)
    ing = ContentStore(root).ingest(Digest.of_bytes(data), len(data))
    ing.write(data[:200_000])
    os._exit(3)  # no abort, no cleanup: as a SIGKILL'd daemon would leave it


def test_crashed_process_leaves_a_resumable_partial(store: ContentStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_die_mid_ingest, args=(store.root, 15))
    p.start()
    p.join(60)
    assert p.exitcode == 3
    data = blob(15)
    d = Digest.of_bytes(data)
    assert list(store.list()) == []
    with store.ingest(d, len(data)) as ing:
        assert ing.resumable  # the dead process's lock died with it
        assert ing.offset == 200_000
        ingest_all(ing, data, start=ing.offset)
        ing.commit()
    _assert_one_intact_blob(store, data)


# -- prune and crash litter ----------------------------------------------------------------


def _age(path: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_prune_keeps_referenced_and_removes_the_rest(store: ContentStore) -> None:
    a, b, c = (store.write_bytes(blob(20 + i, 1000 * (i + 1))) for i in range(3))
    ingest = os.path.join(store.root, "ingest")

    stale = store.ingest(Digest.of_bytes(b"stale"))
    stale.write(b"sta")
    stale.abort(keep_partial=True)
    _age(os.path.join(ingest, Digest.of_bytes(b"stale").hex), 2 * 3600)
    with open(os.path.join(ingest, "tmp-crashed"), "wb") as f:
        f.write(b"12345")
    _age(os.path.join(ingest, "tmp-crashed"), 2 * 3600)

    fresh = store.ingest(Digest.of_bytes(b"fresh"))
    fresh.write(b"fre")
    fresh.abort(keep_partial=True)
    live_data = b"live download"
    live = store.ingest(Digest.of_bytes(live_data))
    live.write(live_data[:4])
    _age(os.path.join(ingest, Digest.of_bytes(live_data).hex), 2 * 3600)

    count, freed = store.prune({a})
    assert (count, freed) == (4, 2000 + 3000 + 3 + 5)
    assert list(store.list()) == [a]
    assert store.verify(a)
    assert not store.exists(b) and not store.exists(c)
    left = sorted(os.listdir(ingest))
    assert left == sorted([Digest.of_bytes(b"fresh").hex, Digest.of_bytes(live_data).hex])
    # The live ingest was left alone and still completes.
    live.write(live_data[4:])
    live.commit()
    assert store.read(Digest.of_bytes(live_data)) == live_data
    assert store.prune({a, Digest.of_bytes(live_data)}) == (0, 0)


def test_crash_litter_never_shows_as_a_blob(store: ContentStore) -> None:
    d = store.write_bytes(b"real")
    ingest = os.path.join(store.root, "ingest")
    ghost = b"half-written blob from a crash"
    with open(os.path.join(ingest, "tmp-k3j4h5"), "wb") as f:
        f.write(ghost)
    with open(os.path.join(ingest, Digest.of_bytes(ghost).hex), "wb") as f:
        f.write(ghost[:10])
    # Junk in the blobs dir itself (not something the store writes) is not listed either.
    with open(os.path.join(store.root, "blobs", "sha256", "not-a-digest"), "wb") as f:
        f.write(b"junk")
    assert list(store.list()) == [d]
    assert not store.exists(Digest.of_bytes(ghost))
    # A store reopened on the same root sees the same thing.
    assert list(ContentStore(store.root).list()) == [d]


# -- hostile digests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sha256:../../x",
        "sha256:../../../../etc/passwd",
        "sha256:" + "../" * 21 + "a",
        "sha256:/etc/passwd",
        "sha256:" + "a" * 63 + "/",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:",
        "../../x",
    ],
)
def test_hostile_digest_refused_by_parse(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Digest.parse(text)


def _forge(algorithm: str, hexpart: str) -> Digest:
    """A Digest that skipped validation, as a buggy caller might build one."""
    d = object.__new__(Digest)
    object.__setattr__(d, "algorithm", algorithm)
    object.__setattr__(d, "hex", hexpart)
    return d


def test_store_refuses_a_forged_digest(tmp_path: Any) -> None:
    store = ContentStore(str(tmp_path / "store"))
    target = tmp_path / "x"
    bad = _forge("sha256", "../../../x")
    ops: list[Callable[[], object]] = [
        lambda: store.exists(bad),
        lambda: store.path(bad),
        lambda: store.read(bad),
        lambda: store.delete(bad),
        lambda: store.ingest(bad),
        lambda: store.write_bytes(b"x", expected=bad),
    ]
    for op in ops:
        with pytest.raises(InvalidArgument):
            op()
    assert not target.exists()
    with pytest.raises(NotSupported):
        store.exists(_forge("sha512", "a" * 128))
