"""The json-file writer: Docker's line format, partial lines, rotation, compression."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from pallet.errors import InvalidArgument
from pallet.monitor import logfile


def lines(path: str) -> list[dict[str, str]]:
    with open(path) as f:
        return [json.loads(x) for x in f]


def test_lines_are_docker_json(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "c-json.log")
    w = logfile.LogWriter(path)
    w.write("stdout", b"one\ntw", 1_795_000_000_123_456_789)
    w.write("stderr", b"err\n", 1_795_000_000_123_456_789)
    w.write("stdout", b"o\n", 1_795_000_000_123_456_789)
    w.close()
    got = lines(path)
    assert got == [
        {"log": "one\n", "stream": "stdout", "time": "2026-11-18T11:06:40.123456789Z"},
        {"log": "err\n", "stream": "stderr", "time": "2026-11-18T11:06:40.123456789Z"},
        {"log": "two\n", "stream": "stdout", "time": "2026-11-18T11:06:40.123456789Z"},
    ]
    assert [e.line for e in logfile.entries(path)] == [b"one\n", b"err\n", b"two\n"]
    assert abs(logfile.parse_time(got[0]["time"]) - 1_795_000_000.123456789) < 1e-6


def test_unfinished_line_is_written_at_close_and_long_lines_are_cut(
        tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "c-json.log")
    w = logfile.LogWriter(path)
    w.write("stdout", b"x" * (logfile.MAX_LINE + 10))
    w.write("stdout", b"no newline")
    w.close()
    got = [e["log"] for e in lines(path)]
    assert got == ["x" * logfile.MAX_LINE, "x" * 10 + "no newline"]


def test_rotation_keeps_max_file_files(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "c-json.log")
    w = logfile.LogWriter(path, max_size=1000, max_file=3)
    for i in range(100):
        w.write("stdout", f"line {i:03d}\n".encode())
    w.close()
    assert logfile.files(path) == [f"{path}.2", f"{path}.1", path]
    got = [e.line for e in logfile.entries(path)]
    assert got[-1] == b"line 099\n"
    assert got == [f"line {i:03d}\n".encode() for i in range(100 - len(got), 100)]
    assert logfile.size(path) <= 3 * 1000


def test_local_driver_compresses_rotated_files(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "c-json.log")
    w = logfile.LogWriter(path, max_size=500, max_file=2, compress=True)
    for i in range(40):
        w.write("stderr", f"line {i:03d}\n".encode())
    w.close()
    assert logfile.files(path) == [f"{path}.1.gz", path]
    with gzip.open(f"{path}.1.gz") as g:
        assert b"line" in g.read()
    assert [e.line for e in logfile.entries(path)][-1] == b"line 039\n"


def test_options() -> None:
    assert logfile.options("json-file", {}) == (logfile.DEFAULT_MAX_SIZE,
                                               logfile.DEFAULT_MAX_FILE, False)
    assert logfile.options("json-file", {"max-size": "10k", "max-file": "2"}) == \
        (10240, 2, False)
    assert logfile.options("local", {})[2] is True
    for driver, opts in (("syslog", {}), ("json-file", {"max-size": "ten"}),
                         ("json-file", {"max-file": "0"}), ("json-file", {"bogus": "1"})):
        with pytest.raises(InvalidArgument):
            logfile.options(driver, opts)
