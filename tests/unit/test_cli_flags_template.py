"""The CLI's docker-style flags and --format templates."""

from __future__ import annotations

import pytest

from pallet.cli import template
from pallet.cli.flags import BOOL, INT, LIST, STR, Flag, UsageError, parse

RUN = [Flag("-i,--interactive"), Flag("-t,--tty"), Flag("-d,--detach"), Flag("--rm"),
       Flag("-e,--env", LIST), Flag("--name", STR), Flag("-p,--publish", LIST),
       Flag("--cpus", STR), Flag("--stop-timeout", INT), Flag("--init", BOOL)]


def test_docker_spellings() -> None:
    a = parse(["-it", "--rm", "-e", "A=1", "--env=B=2", "--name", "x", "-p80:80",
               "--stop-timeout=3", "busybox", "sh", "-c", "echo -e hi"], RUN,
              interspersed=False)
    assert a.interactive is True and a.tty is True and a.rm is True
    assert a.env == ["A=1", "B=2"] and a.name == "x" and a.publish == ["80:80"]
    assert a.stop_timeout == 3
    assert a.args == ["busybox", "sh", "-c", "echo -e hi"]  # the command keeps its flags


def test_errors_say_what_docker_says() -> None:
    with pytest.raises(UsageError, match="unknown flag: --nosuch"):
        parse(["--nosuch"], RUN)
    with pytest.raises(UsageError, match="unknown shorthand flag: 'z' in -iz"):
        parse(["-iz"], RUN)
    with pytest.raises(UsageError, match="flag needs an argument: --name"):
        parse(["--name"], RUN)
    with pytest.raises(UsageError, match='invalid argument "x" for "--stop-timeout"'):
        parse(["--stop-timeout", "x"], RUN)


def test_templates() -> None:
    obj = {"ID": "abc", "Names": ["/a", "/b"], "State": {"Running": True}, "N": None}
    assert template.render("{{.ID}}:{{.State.Running}}", obj) == "abc:true"
    assert template.render("{{json .State}}", obj) == '{"Running":true}'
    assert template.render('{{join .Names ","}}', obj) == "/a,/b"
    assert template.render("{{upper .ID}} {{truncate .ID 2}}", obj) == "ABC ab"
    assert template.render("{{.N}}", obj) == "<no value>"
    with pytest.raises(template.TemplateError, match="can't evaluate field Nope"):
        template.render("{{.Nope}}", obj)
    with pytest.raises(template.TemplateError):
        template.render("{{range .Names}}{{end}}", obj)


def test_table_format_aligns_like_tabwriter() -> None:
    out = template.format_all("table {{.Repository}}\t{{.Tag}}",
                              [{"Repository": "busybox", "Tag": "latest"},
                               {"Repository": "localhost:5000/a/very/long", "Tag": "1"}])
    assert out.splitlines() == [
        "REPOSITORY                   TAG",  # widest cell + 3, as docker images prints
        "busybox                      latest",
        "localhost:5000/a/very/long   1",
    ]
    assert template.format_all("json", [{"a": 1}]) == '{"a":1}\n'
