"""pallet-runtime's command line: runc's flag spellings, errors and log lines."""

from __future__ import annotations

import json
import os

import pytest

from pallet.errors import InvalidArgument
from pallet.runtime import cli


def parse(argv: list[str], verb: str) -> cli.Args:
    a = cli.Args()
    a.positional.extend(cli.parse_flags(argv, cli.VERBS[verb][0], a, stop_at_positional=False))
    return a


def test_flag_spellings() -> None:
    a = parse(["--bundle", "/b", "--pid-file=/p", "-d", "ctr"], "run")
    assert a.str("bundle") == "/b" and a.str("pid_file") == "/p" and a.bool("detach")
    assert a.positional == ["ctr"]
    assert parse(["-b", "/x", "c"], "create").str("bundle") == "/x"
    assert parse(["--preserve-fds", "2", "c"], "create").int("preserve_fds") == 2
    assert parse(["--detach=false", "c"], "run").bool("detach") is False


def test_multi_flags_collect() -> None:
    a = cli.Args()
    rest = cli.parse_flags(["-e", "A=1", "--env", "B=2", "c", "sh", "-c", "x"],
                           cli.VERBS["exec"][0], a, stop_at_positional=True)
    assert a.list("env") == ["A=1", "B=2"]
    assert rest == ["c", "sh", "-c", "x"]  # exec's command keeps its own flags


@pytest.mark.parametrize("argv, message", [
    (["--nosuch", "c"], "flag provided but not defined: --nosuch"),
    (["--bundle"], "flag needs an argument: --bundle"),
    (["--preserve-fds", "x", "c"], "invalid value 'x' for flag --preserve-fds"),
])
def test_bad_flags(argv: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(argv, "create")


def test_unknown_verb_and_arity(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 1
    assert 'level=error msg="no such command: frobnicate"' in capsys.readouterr().err
    assert cli.main(["start"]) == 1
    assert 'requires exactly 1 argument' in capsys.readouterr().err


def test_errors_go_to_the_log_file_as_json(tmp_path: str) -> None:
    log = os.path.join(str(tmp_path), "log.json")
    root = os.path.join(str(tmp_path), "root")
    assert cli.main(["--root", root, "--log", log, "--log-format", "json", "state", "x"]) == 1
    with open(log) as f:
        entry = json.loads(f.readline())
    assert entry["level"] == "error" and entry["msg"] == "container does not exist: x"


def test_debug_logs_the_verb(tmp_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = os.path.join(str(tmp_path), "root")
    assert cli.main(["--debug", "--root", root, "list", "-q"]) == 0
    assert "level=debug" in capsys.readouterr().err


def test_version() -> None:
    assert cli.main(["--version"]) == 0
