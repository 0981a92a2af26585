"""The Dockerfile front end: what each instruction parses to, the errors Docker gives for
what it refuses (with their line), heredocs, directives, and variable substitution."""

from __future__ import annotations

import pytest

from pallet.build.dockerfile import (
    Add,
    Arg,
    Cmd,
    Command,
    Copy,
    Dockerfile,
    DockerfileError,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Heredoc,
    Label,
    Maintainer,
    OnBuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    expand,
    expand_heredoc,
    expand_word,
    expand_words,
    parse,
    parse_duration,
    parse_instruction,
)
from pallet.errors import InvalidArgument


def _stage_cmds(text: str) -> list[Command]:
    return parse("FROM scratch\n" + text).stages[0].commands


def _one(text: str) -> Command:
    cmds = _stage_cmds(text)
    assert len(cmds) == 1
    return cmds[0]


def _error(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as info:
        parse(text)
    return info.value


# -- structure -----------------------------------------------------------------------------


def test_multi_stage_file() -> None:
    df = parse(
        "ARG VERSION=1.0\n"
        "ARG OTHER\n"
        "FROM golang:1.22 AS Build\n"
        "RUN go build\n"
        "\n"
        "FROM --platform=linux/arm64 alpine\n"
        "COPY --from=build /out /bin/app\n"
        'CMD ["/bin/app"]\n'
    )
    assert isinstance(df, Dockerfile)
    assert [a.pairs for a in df.meta_args] == [(("VERSION", "1.0"),), (("OTHER", None),)]
    assert [(s.index, s.name) for s in df.stages] == [(0, "build"), (1, None)]
    assert df.stages[0].from_ == From(3, "FROM golang:1.22 AS Build", "golang:1.22", "build", None)
    assert df.stages[1].from_.platform == "linux/arm64"
    assert [c.line for c in df.stages[1].commands] == [7, 8]
    assert df.escape == "\\" and df.syntax is None
    assert df.stage("BUILD") is df.stages[0]
    assert df.stage("1") is df.stages[1]
    assert df.stage("nope") is None


def test_keywords_are_case_insensitive_and_original_is_kept() -> None:
    cmd = _one("run   echo hi")
    assert isinstance(cmd, Run)
    assert cmd.original == "run   echo hi"
    assert cmd.cmd == ("echo hi",)


def test_empty_file_and_comment_only_file() -> None:
    err = _error("")
    assert str(err) == "dockerfile parse error on line 1: file with no instructions"
    err = _error("# just a comment\n\n# another\n")
    assert err.line == 3
    assert "file with no instructions" in str(err)


def test_instruction_before_from() -> None:
    err = _error("ARG X\nRUN echo\nFROM scratch\n")
    assert str(err) == "dockerfile parse error on line 2: no build stage in current context"


def test_only_args() -> None:
    err = _error("ARG A\nARG B\n")
    assert err.line == 2
    assert err.reason == "dockerfile contains no stages to build"


def test_unknown_instruction() -> None:
    err = _error("FROM scratch\n\nFOO bar\n")
    assert str(err) == "dockerfile parse error on line 3: unknown instruction: FOO"
    assert err.line == 3
    assert isinstance(err, InvalidArgument)


def test_from_errors() -> None:
    assert _error("FROM a b\n").reason == "FROM requires either one or three arguments"
    assert _error("FROM\n").reason == "FROM requires either one or three arguments"
    assert _error("FROM a AS 1x\n").reason == (
        'invalid name for build stage: "1x", name can\'t start with a number or contain symbols'
    )
    err = _error("FROM a AS x\nFROM b AS X\n")
    assert err.line == 2 and "duplicate stage name 'x'" in err.reason
    assert _error("FROM --plat=x a\n").reason == "unknown flag: plat"


# -- directives, comments, continuations -----------------------------------------------------------


def test_directives() -> None:
    df = parse("# syntax=docker/dockerfile:1.7\n# ESCAPE = `\nFROM scratch\n")
    assert df.syntax == "docker/dockerfile:1.7"
    assert df.escape == "`"


def test_directives_only_at_the_top() -> None:
    df = parse("# a comment\n# escape=`\nFROM scratch\nRUN a \\\n b\n")
    assert df.escape == "\\"
    df = parse("\n# escape=`\nFROM scratch\n")
    assert df.escape == "\\"
    df = parse("FROM scratch\n# syntax=x\n")
    assert df.syntax is None


def test_unknown_directive_ends_directives() -> None:
    df = parse("# foo=bar\n# escape=`\nFROM scratch\n")
    assert df.escape == "\\"


def test_directive_errors() -> None:
    err = _error("# escape=`\n# escape=\\\nFROM scratch\n")
    assert err.line == 2
    assert err.reason == "only one escape parser directive can be used"
    err = _error("# escape=x\nFROM scratch\n")
    assert err.line == 1
    assert err.reason == "invalid escape token 'x' does not match ` or \\"


def test_backtick_escape_for_continuations() -> None:
    df = parse("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  && echo done\n")
    run = df.stages[0].commands[0]
    assert isinstance(run, Run)
    assert run.cmd == ("dir c:\\   && echo done",)
    assert run.line == 3


def test_continuations_with_comments_and_blank_lines() -> None:
    cmds = _stage_cmds(
        "RUN apt-get update \\\n"
        "    # install things\n"
        "\n"
        "    && apt-get install -y curl \\\n"
        "  \n"
        "    && echo ok\n"
        "LABEL a=b\n"
    )
    run, label = cmds
    assert isinstance(run, Run)
    assert run.original == ("RUN apt-get update     && apt-get install -y curl     && echo ok")
    assert run.line == 2
    assert label.line == 8


def test_only_whole_line_comments() -> None:
    run = _one("   # indented comment\nRUN echo a # not a comment\n")
    assert isinstance(run, Run)
    assert run.cmd == ("echo a # not a comment",)


def test_escaped_escape_is_not_a_continuation() -> None:
    cmds = _stage_cmds("RUN echo a\\\\\nRUN echo b\n")
    assert [c.cmd for c in cmds] == [("echo a\\\\",), ("echo b",)]  # type: ignore[attr-defined]


def test_continuation_at_end_of_file_and_crlf() -> None:
    run = _one("RUN echo a \\")
    assert isinstance(run, Run) and run.cmd == ("echo a",)
    cmds = parse("FROM scratch\r\nENV a=1\r\nRUN x \\\r\n  y\r\n").stages[0].commands
    assert isinstance(cmds[0], Env) and cmds[0].pairs == (("a", "1"),)
    assert isinstance(cmds[1], Run) and cmds[1].cmd == ("x   y",)


def test_bom_is_stripped() -> None:
    assert parse("\ufeffFROM scratch\n").stages[0].from_.base == "scratch"


# -- instructions ----------------------------------------------------------------------------


def test_run_shell_and_exec_forms() -> None:
    shell = _one("RUN echo $HOME && ls")
    assert shell == Run(2, "RUN echo $HOME && ls", ("echo $HOME && ls",), True, (), {})
    exec_form = _one('RUN ["echo", "a b"]')
    assert isinstance(exec_form, Run)
    assert exec_form.cmd == ("echo", "a b") and exec_form.shell_form is False
    # a malformed array is shell text, as in Docker
    broken = _one('RUN ["echo", a]')
    assert isinstance(broken, Run) and broken.cmd == ('["echo", a]',) and broken.shell_form
    err = _error('FROM scratch\nRUN ["echo", 1]\n')
    assert err.line == 2
    assert err.reason == "when using JSON array syntax, arrays must be comprised of strings only"
    assert _error("FROM scratch\nRUN\n").reason == "RUN requires at least one argument"


def test_run_flags() -> None:
    run = _one(
        "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok "
        "--network=none --security=insecure pip install x"
    )
    assert isinstance(run, Run)
    assert run.cmd == ("pip install x",)
    assert run.mounts == ("type=cache,target=/root/.cache", "type=secret,id=tok")
    assert run.network == "none"
    assert run.security == "insecure"
    assert _error("FROM a\nRUN --foo=1 x\n").reason == "unknown flag: foo"
    assert _error("FROM a\nRUN --network=a --network=b x\n").reason == (
        "duplicate flag specified: network"
    )
    assert _error("FROM a\nRUN --network x\n").reason == "missing a value on flag: network"
    quoted = _one('RUN --mount="type=bind,source=a b" -- --not-a-flag')
    assert isinstance(quoted, Run)
    assert quoted.mounts == ("type=bind,source=a b",)
    assert quoted.cmd == ("--not-a-flag",)


def test_cmd_and_entrypoint() -> None:
    assert _one("CMD echo hi") == Cmd(2, "CMD echo hi", ("echo hi",), True)
    assert _one('CMD ["a", "b"]') == Cmd(2, 'CMD ["a", "b"]', ("a", "b"), False)
    assert _one("CMD []") == Cmd(2, "CMD []", (), False)
    assert _one("CMD") == Cmd(2, "CMD", (), False)  # Docker builds this: an empty CMD
    ep = _one('ENTRYPOINT ["/init"]')
    assert ep == Entrypoint(2, 'ENTRYPOINT ["/init"]', ("/init",), False)
    ep = _one("ENTRYPOINT exec nginx")
    assert isinstance(ep, Entrypoint) and ep.shell_form and ep.cmd == ("exec nginx",)
    assert _error("FROM a\nCMD --x=1 a\n").reason == "unknown flag: x"


def test_shell() -> None:
    assert _one('SHELL ["/bin/bash", "-c"]') == Shell(
        2, 'SHELL ["/bin/bash", "-c"]', ("/bin/bash", "-c")
    )
    assert _error("FROM a\nSHELL /bin/bash -c\n").reason == (
        "SHELL requires the arguments to be in JSON form"
    )
    assert _error("FROM a\nSHELL []\n").reason == "SHELL requires at least one argument"
    assert _error("FROM a\nSHELL\n").reason == "SHELL requires at least one argument"


def test_env_both_syntaxes() -> None:
    assert _one("ENV PATH /usr/bin:/bin  extra").pairs == (  # type: ignore[attr-defined]
        ("PATH", "/usr/bin:/bin  extra"),
    )
    env = _one("ENV a=1 b=\"two words\" c='x' d=e\\ f g=")
    assert isinstance(env, Env)
    assert env.pairs == (("a", "1"), ("b", '"two words"'), ("c", "'x'"), ("d", "e\\ f"), ("g", ""))
    assert _error("FROM a\nENV\n").reason == "ENV requires at least one argument"
    assert _error("FROM a\nENV onlykey\n").reason == "ENV must have two arguments"
    assert _error("FROM a\nENV =x\n").reason == "ENV names can not be blank"
    assert _error("FROM a\nENV a=1 b\n").reason == (
        'Syntax error - can\'t find = in "b". Must be of the form: name=value'
    )


def test_env_with_comment_only_continuation_is_empty() -> None:
    err = _error("FROM scratch\nENV \\\n    # comment\n")
    assert err.line == 2 and err.reason == "ENV requires at least one argument"


def test_label() -> None:
    label = _one('LABEL "com.example.vendor"="ACME" version=1.0 description="a b"')
    assert isinstance(label, Label)
    assert label.pairs == (
        ('"com.example.vendor"', '"ACME"'),
        ("version", "1.0"),
        ("description", '"a b"'),
    )
    old = _one("LABEL maintainer someone@example.com")
    assert isinstance(old, Label) and old.pairs == (("maintainer", "someone@example.com"),)
    assert _error("FROM a\nLABEL\n").reason == "LABEL requires at least one argument"


def test_arg() -> None:
    arg = _one('ARG a b=2 c="x y" d=')
    assert isinstance(arg, Arg)
    assert arg.pairs == (("a", None), ("b", "2"), ("c", '"x y"'), ("d", ""))
    assert _error("FROM a\nARG\n").reason == "ARG requires at least one argument"
    assert _error("FROM a\nARG =1\n").reason == "ARG names can not be blank"


def test_simple_single_argument_instructions() -> None:
    cmds = _stage_cmds(
        "WORKDIR /my dir\nUSER app:app\nSTOPSIGNAL SIGTERM\nMAINTAINER Jane <j@x.org>\n"
    )
    assert cmds == [
        Workdir(2, "WORKDIR /my dir", "/my dir"),
        User(3, "USER app:app", "app:app"),
        StopSignal(4, "STOPSIGNAL SIGTERM", "SIGTERM"),
        Maintainer(5, "MAINTAINER Jane <j@x.org>", "Jane <j@x.org>"),
    ]
    for keyword in ("WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"):
        err = _error(f"FROM a\n{keyword}\n")
        assert err.reason == f"{keyword} requires exactly one argument"
        assert err.line == 2


def test_expose_and_volume() -> None:
    assert _one("EXPOSE 80/tcp 443  53/udp") == Expose(
        2, "EXPOSE 80/tcp 443  53/udp", ("80/tcp", "443", "53/udp")
    )
    assert _error("FROM a\nEXPOSE\n").reason == "EXPOSE requires at least one argument"
    assert _one("VOLUME /a /b").paths == ("/a", "/b")  # type: ignore[attr-defined]
    assert _one('VOLUME ["/a b", "/c"]') == Volume(2, 'VOLUME ["/a b", "/c"]', ("/a b", "/c"))
    assert _error("FROM a\nVOLUME\n").reason == "VOLUME requires at least one argument"
    assert _error('FROM a\nVOLUME ["/a", " "]\n').reason == (
        "VOLUME specified can not be an empty string"
    )


def test_copy() -> None:
    copy = _one("COPY --from=build --chown=1000:1000 --chmod=0755 --link a b* /dst/")
    assert copy == Copy(
        2,
        "COPY --from=build --chown=1000:1000 --chmod=0755 --link a b* /dst/",
        ("a", "b*"),
        "/dst/",
        from_="build",
        chown="1000:1000",
        chmod="0755",
        link=True,
    )
    json_form = _one('COPY ["a b", "c", "/d"]')
    assert isinstance(json_form, Copy)
    assert json_form.sources == ("a b", "c") and json_form.dest == "/d"
    assert _one("COPY --link=false a /b").link is False  # type: ignore[attr-defined]
    err = _error("FROM a\nCOPY onlyone\n")
    assert err.reason == (
        "COPY requires at least two arguments, but only one was provided. "
        "Destination could not be determined"
    )
    assert _error("FROM a\nCOPY --checksum=x a b\n").reason == "unknown flag: checksum"
    assert _error("FROM a\nCOPY --link=maybe a b\n").reason == (
        "expecting boolean value for flag link, not: maybe"
    )
    assert _error("FROM a\nCOPY --link= a b\n").reason == "missing a value on flag: link"


def test_add() -> None:
    add = _one(
        "ADD --checksum=sha256:abc --keep-git-dir --chown=a https://x/y.tgz git@h:r.git /opt/"
    )
    assert isinstance(add, Add)
    assert add.sources == ("https://x/y.tgz", "git@h:r.git")
    assert add.dest == "/opt/"
    assert add.checksum == "sha256:abc"
    assert add.keep_git_dir is True
    assert add.chown == "a" and add.from_ is None and add.link is False
    assert _error("FROM a\nADD x\n").reason.startswith("ADD requires at least two arguments")
    assert _error("FROM a\nADD --from=x a b\n").reason == "unknown flag: from"


def test_healthcheck() -> None:
    hc = _one(
        "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s "
        "--start-interval=1.5s --retries=3 CMD curl -f http://localhost/ || exit 1"
    )
    assert isinstance(hc, Healthcheck)
    assert hc.test == ("CMD-SHELL", "curl -f http://localhost/ || exit 1")
    assert hc.interval == 90_000_000_000
    assert hc.timeout == 500_000_000
    assert hc.start_period == 2_000_000_000
    assert hc.start_interval == 1_500_000_000
    assert hc.retries == 3
    assert hc.config() == {
        "Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
        "Interval": 90_000_000_000,
        "Timeout": 500_000_000,
        "StartPeriod": 2_000_000_000,
        "StartInterval": 1_500_000_000,
        "Retries": 3,
    }
    exec_form = _one('HEALTHCHECK cmd ["/bin/check", "-q"]')
    assert isinstance(exec_form, Healthcheck)
    assert exec_form.config() == {"Test": ["CMD", "/bin/check", "-q"]}
    none = _one("HEALTHCHECK NONE")
    assert isinstance(none, Healthcheck) and none.config() == {"Test": ["NONE"]}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK RUN x", 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
        ("HEALTHCHECK --interval=1us CMD x", 'Interval "interval" cannot be less than 1ms'),
        ("HEALTHCHECK --timeout=5 CMD x", 'time: missing unit in duration "5"'),
        ("HEALTHCHECK --timeout=5x CMD x", 'time: unknown unit "x" in duration "5x"'),
        ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --retries=a CMD x", 'strconv.ParseInt: parsing "a": invalid syntax'),
        ("HEALTHCHECK --foo=1 CMD x", "unknown flag: foo"),
    ],
)
def test_healthcheck_errors(line: str, reason: str) -> None:
    err = _error(f"FROM a\n\n{line}\n")
    assert err.line == 3
    assert err.reason == reason


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("30s", 30_000_000_000),
        ("1m30s", 90_000_000_000),
        ("1h", 3_600_000_000_000),
        ("500ms", 500_000_000),
        ("1.5s", 1_500_000_000),
        (".5s", 500_000_000),
        ("10us", 10_000),
        ("10\u00b5s", 10_000),
        ("7ns", 7),
        ("-1s", -1_000_000_000),
    ],
)
def test_parse_duration(text: str, nanos: int) -> None:
    assert parse_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "s", "1", "1.s.", "x1s", "1d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="time: "):
        parse_duration(text)


def test_onbuild() -> None:
    ob = _one("ONBUILD RUN echo hi")
    assert ob == OnBuild(2, "ONBUILD RUN echo hi", "RUN echo hi")
    ob = _one("onbuild   COPY . /app")
    assert isinstance(ob, OnBuild) and ob.expression == "COPY . /app"
    assert _error("FROM a\nONBUILD\n").reason == "ONBUILD requires at least one argument"
    assert _error("FROM a\nONBUILD ONBUILD RUN x\n").reason == (
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    )
    assert _error("FROM a\nONBUILD from x\n").reason == "FROM isn't allowed as an ONBUILD trigger"
    assert _error("FROM a\nONBUILD MAINTAINER x\n").reason == (
        "MAINTAINER isn't allowed as an ONBUILD trigger"
    )


def test_onbuild_heredoc_trigger_round_trips() -> None:
    ob = _one("ONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert isinstance(ob, OnBuild)
    assert ob.expression == "RUN <<EOF\necho hi\nEOF"
    trigger = parse_instruction(ob.expression)
    assert isinstance(trigger, Run)
    assert trigger.heredocs == (Heredoc("EOF", "echo hi\n", True, False),)


def test_parse_instruction() -> None:
    assert parse_instruction("RUN echo hi", line=7) == Run(7, "RUN echo hi", ("echo hi",), True)
    copy = parse_instruction("COPY a `\n b", escape="`")
    assert isinstance(copy, Copy) and copy.sources == ("a",) and copy.dest == "b"
    # a "# escape=" line is no directive here: it is a comment
    assert isinstance(parse_instruction("# escape=`\nUSER x"), User)
    with pytest.raises(DockerfileError, match="on line 3: unknown instruction: BOGUS"):
        parse_instruction("BOGUS x", line=3)
    with pytest.raises(DockerfileError, match="file with no instructions"):
        parse_instruction("   ")
    with pytest.raises(DockerfileError, match="on line 2: expected a single instruction"):
        parse_instruction("RUN a\nRUN b")


# -- heredocs -----------------------------------------------------------------------------------


def test_run_heredoc_as_the_command() -> None:
    cmds = _stage_cmds("RUN <<EOF\napt-get update\napt-get install -y vim\nEOF\nUSER x\n")
    run, user = cmds
    assert isinstance(run, Run)
    assert run.cmd == ("<<EOF",)
    assert run.shell_form
    assert run.original == "RUN <<EOF"
    assert run.heredocs == (
        Heredoc("EOF", "apt-get update\napt-get install -y vim\n", True, False),
    )
    assert user.line == 6


def test_run_several_heredocs_and_shell_script() -> None:
    run = _one("RUN cat <<A <<'B' > /f\na $x\nA\nb $y\nB\n")
    assert isinstance(run, Run)
    assert run.cmd == ("cat <<A <<'B' > /f",)
    assert run.heredocs == (
        Heredoc("A", "a $x\n", True, False),
        Heredoc("B", "b $y\n", False, False),
    )
    assert run.shell_script() == "cat <<A <<'B' > /f\na $x\nA\nb $y\nB"


def test_heredoc_chomp_and_quoting() -> None:
    run = _one('RUN python3 <<-"PY"\n\tprint("hi")\n\t\tx = 1\n\tPY\n')
    assert isinstance(run, Run)
    assert run.heredocs == (Heredoc("PY", 'print("hi")\nx = 1\n', False, True),)
    partly_quoted = _one('RUN <<E"O"F\n$x\nEOF\n')
    assert isinstance(partly_quoted, Run)
    assert partly_quoted.heredocs[0].name == "EOF"
    assert partly_quoted.heredocs[0].expand is False


def test_heredoc_body_is_verbatim() -> None:
    run = _one("RUN <<EOF\n# not a comment \\\n\n  indented\nEOF\n")
    assert isinstance(run, Run)
    assert run.heredocs[0].content == "# not a comment \\\n\n  indented\n"


def test_heredoc_empty_body_and_last_line_without_newline() -> None:
    run = _one("RUN <<EOF\nEOF")
    assert isinstance(run, Run) and run.heredocs[0].content == ""


def test_copy_heredocs() -> None:
    copy = _one("COPY --chmod=644 <<a.txt <<b.txt /dir/\nAAA\na.txt\nBBB\nb.txt\n")
    assert isinstance(copy, Copy)
    assert copy.sources == ()
    assert copy.dest == "/dir/"
    assert copy.chmod == "644"
    assert copy.heredocs == (
        Heredoc("a.txt", "AAA\n", True, False),
        Heredoc("b.txt", "BBB\n", True, False),
    )
    mixed = _one("COPY file <<EOF /dst\nhi\nEOF\n")
    assert isinstance(mixed, Copy)
    assert mixed.sources == ("file",)
    assert mixed.heredocs == (Heredoc("EOF", "hi\n", True, False),)
    assert _error("FROM a\nCOPY x <<EOF\nhi\nEOF\n").reason == (
        "COPY cannot accept a heredoc as a destination"
    )


def test_heredocs_only_where_docker_reads_them() -> None:
    # JSON form, other instructions and words merely containing << are not heredocs
    cmds = _stage_cmds(
        'RUN ["cat", "<<EOF"]\nENV a=<<EOF\nRUN cat<<EOF\nRUN echo "<<EOF"\nUSER x\n'
    )
    assert [type(c) for c in cmds] == [Run, Env, Run, Run, User]
    assert all(not getattr(c, "heredocs", ()) for c in cmds)


def test_unterminated_heredoc_names_its_start() -> None:
    err = _error("FROM a\nRUN true\nRUN <<EOF\necho\nEOT\n")
    assert str(err) == "dockerfile parse error on line 3: unterminated heredoc"
    err = _error("FROM a\nRUN <<-X\n\tbody\n  X\n")
    assert err.line == 2  # only tabs are stripped from the terminator line


# -- substitution -------------------------------------------------------------------------------

ENV = {"A": "alpha", "EMPTY": "", "SP": "x y", "P": "/usr/local/bin"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "alpha"),
        ("${A}", "alpha"),
        ("pre${A}post", "prealphapost"),
        ("$A_x", ""),  # the name is A_x
        ("${UNSET}", ""),
        ("${UNSET:-def}", "def"),
        ("${EMPTY:-def}", "def"),
        ("${EMPTY-def}", ""),
        ("${UNSET-def}", "def"),
        ("${A:-def}", "alpha"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-$A}", "alpha"),
        ("\\$A", "$A"),
        ("'$A'", "$A"),
        ('"$A"', "alpha"),
        ('"\\$A \\" \\x"', '$A " \\x'),
        ("a\\ b", "a b"),
        ('"x y"', "x y"),
        ("'a'\"b\"c", "abc"),
        ("$", "$"),
        ("a$", "a$"),
        ("${P%/*}", "/usr/local"),
        ("${P%%/*}", ""),
        ("${P#*/}", "usr/local/bin"),
        ("${P##*/}", "bin"),
        ("${P/local/LOC}", "/usr/LOC/bin"),
        ("${P//\\//_}", "_usr_local_bin"),
        ("$SP", "x y"),
    ],
)
def test_expand_word(word: str, expected: str) -> None:
    assert expand_word(word, ENV) == expected


def test_expand_word_with_backtick_escape() -> None:
    assert expand_word("`$A c:\\dir", ENV, "`") == "$A c:\\dir"


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${A", "syntax error: missing '}'"),
        ("${}", "syntax error: bad substitution"),
        ("${:a}", "syntax error: bad substitution"),
        ("'open", "unexpected end of statement while looking for matching single-quote"),
        ('"open', "unexpected end of statement while looking for matching double-quote"),
        ("${A!x}", "unsupported modifier (!) in substitution"),
        ("${UNSET?}", "UNSET: is not allowed to be unset"),
        ("${EMPTY:?must be set}", "EMPTY: must be set"),
    ],
)
def test_expand_word_errors(word: str, message: str) -> None:
    with pytest.raises(ValueError, match="failed to process") as info:
        expand_word(word, ENV)
    assert message in str(info.value)


def test_expand_words_splits_after_substitution() -> None:
    assert expand_words("$SP 'q r' s\\ t \"\"", ENV) == ["x", "y", "q r", "s t"]
    assert expand_words("  ", ENV) == []


def test_expand_env_removes_quotes_and_uses_previous_values() -> None:
    (env,) = _stage_cmds('ENV A=new B="$A and more" C=\'$A\' D="x y"')
    out = expand(env, ENV)
    assert isinstance(out, Env)
    assert out.pairs == (("A", "new"), ("B", "alpha and more"), ("C", "$A"), ("D", "x y"))
    assert isinstance(env, Env)
    assert out.original == env.original  # the step line still shows what was written
    assert env.pairs[3] == ("D", '"x y"')  # the parsed command is untouched


def test_expand_old_style_env_keeps_inner_spaces() -> None:
    (env,) = _stage_cmds('ENV MSG hello   "$A"')
    assert expand(env, ENV).pairs == (("MSG", "hello   alpha"),)  # type: ignore[attr-defined]


def test_expand_applies_where_docker_does() -> None:
    cmds = _stage_cmds(
        "ARG V=${A}-1 W\n"
        "LABEL version=$A\n"
        "EXPOSE $PORTS 9000\n"
        "WORKDIR /srv/$A\n"
        "USER ${A}:$A\n"
        "VOLUME /data/$A\n"
        "STOPSIGNAL $SIG\n"
        "COPY --from=$A --chown=$A --chmod=$M $A-*.txt /dst/$A/\n"
        "ADD --checksum=$SUM $A /x\n"
        "RUN --mount=type=cache,target=$DIR echo $A\n"
        "CMD echo $A\n"
        'ENTRYPOINT ["$A"]\n'
        'SHELL ["$A"]\n'
        "HEALTHCHECK CMD echo $A\n"
        "ONBUILD RUN echo $A\n"
        "MAINTAINER $A\n"
    )
    env = {
        **ENV,
        "PORTS": "80 443/udp",
        "SIG": "SIGQUIT",
        "M": "755",
        "SUM": "sha256:1",
        "DIR": "/c",
    }
    out = [expand(c, env) for c in cmds]
    assert out[0].pairs == (("V", "alpha-1"), ("W", None))  # type: ignore[attr-defined]
    assert out[1].pairs == (("version", "alpha"),)  # type: ignore[attr-defined]
    assert out[2].ports == ("80", "443/udp", "9000")  # type: ignore[attr-defined]
    assert out[3].path == "/srv/alpha"  # type: ignore[attr-defined]
    assert out[4].user == "alpha:alpha"  # type: ignore[attr-defined]
    assert out[5].paths == ("/data/alpha",)  # type: ignore[attr-defined]
    assert out[6].signal == "SIGQUIT"  # type: ignore[attr-defined]
    copy = out[7]
    assert isinstance(copy, Copy)
    assert (copy.from_, copy.chown, copy.chmod) == ("alpha", "alpha", "755")
    assert copy.sources == ("alpha-*.txt",) and copy.dest == "/dst/alpha/"
    add = out[8]
    assert isinstance(add, Add) and add.checksum == "sha256:1" and add.sources == ("alpha",)
    run = out[9]
    assert isinstance(run, Run)
    assert run.mounts == ("type=cache,target=/c",)
    assert run.cmd == ("echo $A",)  # the shell expands it, not the builder
    # left for the shell, the child build, or not substituted at all
    assert out[10:] == cmds[10:]


def test_expand_from_with_meta_args() -> None:
    df = parse("ARG TAG=3.19\nFROM --platform=$BUILDPLATFORM alpine:${TAG} AS base\n")
    frm = expand(df.stages[0].from_, {"TAG": "3.20", "BUILDPLATFORM": "linux/amd64"})
    assert frm == From(2, df.stages[0].from_.original, "alpine:3.20", "base", "linux/amd64")


def test_expand_error_names_the_line() -> None:
    (workdir,) = _stage_cmds("\n\nWORKDIR ${oops\n")
    with pytest.raises(DockerfileError) as info:
        expand(workdir, {})
    assert info.value.line == 4
    assert str(info.value).startswith("dockerfile parse error on line 4: failed to process")


def test_expand_heredoc_keeps_quotes() -> None:
    assert expand_heredoc("echo \"$A\" '$A' \\$A\n", ENV) == "echo \"alpha\" 'alpha' $A\n"
