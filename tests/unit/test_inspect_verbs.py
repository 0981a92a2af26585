"""ps / events / update / features: the parts with rules of their own, without a container.

`update` is also driven end to end here against a state directory and a fake cgroup,
to pin down what is saved, what is applied and what happens when the kernel refuses.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest

from pallet.errors import InvalidArgument, InvalidState, NotSupported, SystemFailure
from pallet.linux import caps, proc
from pallet.oci.resources import Memory, Resources, parse_resources
from pallet.runtime import cli, inspect_verbs, mountopts, state

PS_EF = """\
UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 09:12 ?        00:00:03 /sbin/init
root        4242       1  0 09:13 ?        00:00:00 sleep 4243
root        4243    4242  0 09:13 ?        00:00:00 sh -c echo 4242
daemon      4244       1  0 09:13 ?        00:00:00 /usr/sbin/atd -f
"""

BUSYBOX_PS = """\
PID   USER     TIME  COMMAND
    1 root      0:00 sleep 1000
   12 root      0:00 sh
"""


def update_args(*argv: str, cid: str = "c1") -> cli.Args:
    a = cli.Args()
    flags = cli.VERBS["update"][0]
    a.positional.extend(cli.parse_flags([*argv, cid], flags, a, stop_at_positional=False))
    return a


# --- ps ---------------------------------------------------------------------------------


def test_ps_keeps_the_header_and_the_container_rows() -> None:
    assert inspect_verbs.filter_ps(PS_EF, [4242, 4243]) == (
        "UID          PID    PPID  C STIME TTY          TIME CMD\n"
        "root        4242       1  0 09:13 ?        00:00:00 sleep 4243\n"
        "root        4243    4242  0 09:13 ?        00:00:00 sh -c echo 4242\n"
    )


def test_ps_matches_the_pid_column_not_numbers_elsewhere_in_the_row() -> None:
    # 4243 appears in row 4242's command and 4242 in row 4243's PPID and command.
    out = inspect_verbs.filter_ps(PS_EF, [4243])
    assert out.splitlines()[1:] == [
        "root        4243    4242  0 09:13 ?        00:00:00 sh -c echo 4242"
    ]


def test_ps_finds_the_pid_column_wherever_the_options_put_it() -> None:
    assert inspect_verbs.pid_column(PS_EF.splitlines()[0]) == 1
    assert inspect_verbs.pid_column(BUSYBOX_PS.splitlines()[0]) == 0
    assert inspect_verbs.filter_ps(BUSYBOX_PS, [12]).splitlines()[1:] == [
        "   12 root      0:00 sh"
    ]


def test_ps_with_no_matching_rows_prints_the_header_alone() -> None:
    assert inspect_verbs.filter_ps(PS_EF, []) == PS_EF.splitlines()[0] + "\n"


def test_ps_output_without_a_pid_column_is_an_error() -> None:
    with pytest.raises(SystemFailure, match="couldn't find PID field"):
        inspect_verbs.filter_ps("USER COMMAND\nroot sh\n", [1])


def test_ps_row_with_no_number_in_the_pid_column_is_an_error() -> None:
    with pytest.raises(SystemFailure, match="unable to parse pid"):
        inspect_verbs.filter_ps("UID PID CMD\nroot - sh\n", [1])


def test_ps_rejects_an_unknown_format_before_looking_for_the_container(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli.main(["--root", str(tmp_path), "ps", "--format", "yaml", "nosuch"])
    assert rc == 1
    assert "invalid format option: yaml" in capsys.readouterr().err


# --- events -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("1m30s", 90.0), ("250ms", 0.25), ("1.5h", 5400.0), ("0", 0.0),
     ("100us", 1e-4), ("-1s", -1.0)],
)
def test_interval_takes_go_durations(text: str, seconds: float) -> None:
    assert inspect_verbs.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "", "s", "abc", "1.2.3s", "5 s", "1d"])
def test_interval_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid duration"):
        inspect_verbs.parse_duration(text)


def test_events_refuses_a_non_positive_interval(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli.main(["--root", str(tmp_path), "events", "--interval", "0s", "nosuch"])
    assert rc == 1
    assert "duration interval must be greater than 0" in capsys.readouterr().err


def test_stats_event_has_runcs_envelope() -> None:
    ev = inspect_verbs.stats_event("c1", {"pids": {"current": 2, "limit": 0}})
    assert ev == {
        "type": "stats", "id": "c1",
        "data": {"pids": {"current": 2, "limit": 0}, "intel_rdt": {},
                 "network_interfaces": None},
    }


# --- update: values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("512m", 512 << 20), ("1g", 1 << 30), ("1G", 1 << 30), ("1.5g", 3 << 29),
     ("64KiB", 64 << 10), ("64kb", 64 << 10), ("1 GB", 1 << 30), ("100", 100),
     ("100b", 100), ("2t", 2 << 40), ("1p", 1 << 50), ("0.5k", 512)],
)
def test_memory_sizes_parse_as_runc_does(text: str, size: int) -> None:
    assert inspect_verbs.ram_in_bytes(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [("5xx", "invalid suffix: 'xx'"), ("m", "invalid size: 'm'"), ("", "invalid size"),
     ("1.2.3m", "invalid size"), ("5mib?", "invalid suffix: 'mib?'"),
     ("5mi", "invalid suffix: 'mi'"), ("5kbb", "invalid suffix"), ("9999999p", "invalid size")],
)
def test_memory_sizes_reject_what_runc_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("?", r"\?")):
        inspect_verbs.ram_in_bytes(text)


def test_update_flags_become_a_resources_object() -> None:
    a = update_args(
        "--memory", "512m", "--memory-swap", "-1", "--memory-reservation", "256m",
        "--cpu-share", "512", "--cpu-quota", "-1", "--cpu-period", "100000",
        "--cpu-burst", "1000", "--cpuset-cpus", "0-1", "--cpuset-mems", "0",
        "--cpu-rt-period", "1000000", "--cpu-rt-runtime", "950000", "--cpu-idle", "1",
        "--pids-limit", "100", "--blkio-weight", "300",
    )
    assert inspect_verbs.update_from_flags(a) == {
        "memory": {"limit": 512 << 20, "swap": -1, "reservation": 256 << 20},
        "cpu": {"shares": 512, "quota": -1, "period": 100000, "burst": 1000, "cpus": "0-1",
                "mems": "0", "realtimePeriod": 1000000, "realtimeRuntime": 950000, "idle": 1},
        "pids": {"limit": 100},
        "blockIO": {"weight": 300},
    }


def test_update_flags_at_their_zero_defaults_change_nothing() -> None:
    a = update_args("--pids-limit", "0", "--blkio-weight", "0", "--memory", "")
    assert inspect_verbs.update_from_flags(a) == {}


def test_update_pids_limit_minus_one_is_unlimited() -> None:
    upd = inspect_verbs.requested_update(update_args("--pids-limit", "-1"))
    assert upd.pids is not None and upd.pids.limit == -1


@pytest.mark.parametrize(
    ("argv", "message"),
    [(("--memory", "lots"), "invalid value for memory: invalid size: 'lots'"),
     (("--memory-swap", "-2"), "invalid value for memory-swap: invalid size"),
     (("--cpu-share", "-5"), "invalid value for cpu-share"),
     (("--cpu-period", "1.5"), "invalid value for cpu-period"),
     (("--cpu-quota", "x"), "invalid value for cpu-quota"),
     (("--cpu-share", "99999999999999999999"), "out of range"),
     (("--pids-limit", "abc"), 'invalid value "abc" for flag -pids-limit: parse error'),
     (("--blkio-weight", "5"), "blockIO.weight: must be between 10 and 1000"),
     (("--cpuset-cpus", "0-a"), "resources.cpu.cpus")],
)
def test_invalid_update_flags_are_refused(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        inspect_verbs.requested_update(update_args(*argv))


def test_intel_rdt_flags_are_not_supported() -> None:
    with pytest.raises(NotSupported, match="l3 cache schema is not enabled"):
        inspect_verbs.update_from_flags(update_args("--l3-cache-schema", "L3:0=ff"))


def test_kernel_memory_is_ignored_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_verbs.update_from_flags(update_args("--kernel-memory", "1g")) == {}
    err = capsys.readouterr().err
    assert "level=warning" in err and "Setting --kernel-memory is ignored" in err


def test_resources_file_wins_over_flags_and_devices_are_left_alone(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "r.json")
    with open(path, "w") as f:
        json.dump({"memory": {"limit": 1 << 30}, "pids": {"limit": 7},
                   "devices": [{"allow": False, "access": "rwm"}]}, f)
    upd = inspect_verbs.requested_update(update_args("--resources", path, "--memory", "1m"))
    assert upd.memory == Memory(limit=1 << 30)
    assert upd.pids is not None and upd.pids.limit == 7
    assert upd.devices is None


def test_resources_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b'{"cpu": {"shares": 256}}'))
    monkeypatch.setattr("sys.stdin", stdin)
    upd = inspect_verbs.requested_update(update_args("-r", "-"))
    assert upd.cpu is not None and upd.cpu.shares == 256


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "invalid JSON"), (b'{"memory": {"limit": "1g"}}',
                                      "resources.memory.limit: must be an integer"),
     (b"[]", "resources: must be an object")],
)
def test_invalid_resources_json_is_refused(tmp_path: Any, content: bytes, message: str) -> None:
    path = os.path.join(str(tmp_path), "r.json")
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(InvalidArgument, match=message):
        inspect_verbs.requested_update(update_args("--resources", path))


def test_missing_resources_file_is_refused(tmp_path: Any) -> None:
    with pytest.raises(InvalidArgument, match="No such file"):
        inspect_verbs.requested_update(update_args("-r", os.path.join(str(tmp_path), "none")))


def test_unlimited_memory_also_lifts_a_stored_swap_limit() -> None:
    base = Resources(memory=Memory(limit=1 << 30, swap=2 << 30))
    new = inspect_verbs.merged_resources(base, Resources(memory=Memory(limit=-1)))
    assert new.memory == Memory(limit=-1, swap=-1)
    kept = inspect_verbs.merged_resources(base, Resources(memory=Memory(limit=3 << 30)))
    assert kept.memory == Memory(limit=3 << 30, swap=2 << 30)


# --- update: end to end against a fake cgroup -------------------------------------------


class FakeCgroup:
    applied: list[Resources]
    refuse: set[int]  # indexes of apply() calls that fail

    def __init__(self) -> None:
        self.applied = []
        self.refuse = set()

    def apply(self, res: Resources) -> None:
        self.applied.append(res)
        if len(self.applied) - 1 in self.refuse:
            raise InvalidArgument("cgroups: write memory.limit_in_bytes: Invalid argument")

    def frozen(self) -> bool:
        return False


@pytest.fixture
def live(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, FakeCgroup]:
    """A 'running' container whose init is this test process, and its fake cgroup."""
    root = os.path.join(str(tmp_path), "state")
    resources = {"memory": {"limit": 1 << 30}, "pids": {"limit": 50},
                 "devices": [{"allow": False, "access": "rwm"}]}
    ctr = state.new(root, "c1", {
        "id": "c1", "bundle": str(tmp_path), "pid": os.getpid(),
        "pidStartTime": proc.start_time(os.getpid()),
        "config": {"ociVersion": "1.2.0", "linux": {"resources": resources}},
        "cgroupPaths": {"memory": "/nonexistent/memory/c1"},
    })
    ctr.save()
    fake = FakeCgroup()
    from pallet.runtime import cgroups

    monkeypatch.setattr(cgroups.Cgroup, "from_paths", classmethod(lambda cls, paths: fake))
    return root, fake


def test_update_applies_the_merged_resources_and_saves_them(
    live: tuple[str, FakeCgroup],
) -> None:
    root, fake = live
    assert cli.main(["--root", root, "update", "--memory", "512m", "--pids-limit", "9",
                     "c1"]) == 0
    assert len(fake.applied) == 1
    applied = fake.applied[0]
    assert applied.memory == Memory(limit=512 << 20)
    assert applied.pids is not None and applied.pids.limit == 9
    assert applied.devices is None  # device rules are not rewritten on update
    saved = state.load(root, "c1").config["linux"]
    assert isinstance(saved, dict)
    res = parse_resources(saved["resources"])
    assert res.memory == Memory(limit=512 << 20)
    assert res.pids is not None and res.pids.limit == 9
    assert res.devices is not None and len(res.devices) == 1  # kept in the state


def test_update_that_the_kernel_refuses_restores_and_saves_nothing(
    live: tuple[str, FakeCgroup], capsys: pytest.CaptureFixture[str]
) -> None:
    root, fake = live
    before = state.load(root, "c1").data
    fake.refuse = {0}
    assert cli.main(["--root", root, "update", "--memory", "1m", "c1"]) == 1
    assert "Invalid argument" in capsys.readouterr().err
    assert [r.memory for r in fake.applied] == [Memory(limit=1 << 20), Memory(limit=1 << 30)]
    assert state.load(root, "c1").data == before


def test_invalid_update_touches_nothing(
    live: tuple[str, FakeCgroup], capsys: pytest.CaptureFixture[str]
) -> None:
    root, fake = live
    before = state.load(root, "c1").data
    assert cli.main(["--root", root, "update", "--memory", "1zz", "c1"]) == 1
    assert "invalid value for memory" in capsys.readouterr().err
    assert fake.applied == []
    assert state.load(root, "c1").data == before


def test_update_of_a_stopped_container_is_refused(live: tuple[str, FakeCgroup]) -> None:
    root, fake = live
    ctr = state.load(root, "c1")
    ctr.data["pidStartTime"] = -1  # no longer the same process: stopped
    ctr.save()
    with pytest.raises(InvalidState, match="container is stopped"):
        inspect_verbs.verb_update(root, update_args("--memory", "1g"))
    assert fake.applied == []


# --- features ---------------------------------------------------------------------------


def test_features_document_shape() -> None:
    feat = inspect_verbs.features()
    json.dumps(feat)  # serializable as is
    assert feat["ociVersionMin"] == "1.0.0"
    assert feat["ociVersionMax"] == cli.SPEC_VERSION
    assert feat["hooks"] == ["prestart", "createRuntime", "createContainer",
                             "startContainer", "poststart", "poststop"]
    linux = feat["linux"]
    assert isinstance(linux, dict)
    assert linux["namespaces"] == ["cgroup", "ipc", "mount", "network", "pid", "time", "user",
                                   "uts"]
    assert linux["capabilities"] == list(caps.NAMES[: caps.last_cap() + 1])
    assert linux["cgroup"] == {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                               "rdma": True}
    assert linux["intelRdt"] == {"enabled": False}
    assert set(linux["mountExtensions"]["idmap"]) == {"enabled"}
    assert set(linux["apparmor"]) == {"enabled"} and set(linux["selinux"]) == {"enabled"}
    annotations = feat["annotations"]
    assert isinstance(annotations, dict)
    assert annotations[inspect_verbs.ANNOTATION_VERSION] == cli.VERSION


def test_features_lists_every_mount_option_pallet_accepts() -> None:
    options = inspect_verbs.features()["mountOptions"]
    assert isinstance(options, list) and options == sorted(options)
    for opt in options:
        parsed = mountopts.parse([opt])
        assert not parsed.data, f"{opt} would be passed to the kernel as data"
    assert {"rro", "rbind", "rprivate", "nosymfollow", "tmpcopyup", "idmap"} <= set(options)


def test_features_seccomp_section() -> None:
    seccomp = inspect_verbs.features()["linux"]["seccomp"]  # type: ignore[index]
    if not seccomp["enabled"]:
        pytest.skip("libseccomp is not installed")
    assert {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_NOTIFY",
            "SCMP_ACT_LOG"} <= set(seccomp["actions"])
    assert "SCMP_CMP_MASKED_EQ" in seccomp["operators"]
    assert set(seccomp["supportedFlags"]) <= set(seccomp["knownFlags"])


def test_features_verb_prints_indented_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["features"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('{\n    "ociVersionMin": "1.0.0",\n')
    assert json.loads(out) == inspect_verbs.features()
