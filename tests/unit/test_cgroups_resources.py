"""linux.resources parsing, validation messages and update merging (pure, no fs)."""

from __future__ import annotations

import json

import pytest

from pallet.errors import InvalidArgument
from pallet.oci.resources import (
    CPU,
    DeviceRule,
    HugepageLimit,
    Memory,
    Pids,
    Resources,
    ThrottleDevice,
    merge_update,
    parse_resources,
)

# What dockerd 20.10 generated for `docker run -m 64m --memory-swap 128m --cpus .5
# --pids-limit 50` (reference/dockerd-20.10/oci-config-generated-by-dockerd.json).
DOCKER = {
    "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
    ],
    "memory": {"limit": 67108864, "swap": 134217728, "disableOOMKiller": False},
    "cpu": {"shares": 0, "quota": 50000, "period": 100000},
    "pids": {"limit": 50},
    "blockIO": {"weight": 0},
}

FULL = {
    "devices": [{"allow": True, "type": "b", "major": 8, "access": "r"}],
    "memory": {
        "limit": 1 << 30,
        "reservation": 1 << 29,
        "swap": 2 << 30,
        "kernel": -1,
        "kernelTCP": 1 << 20,
        "swappiness": 10,
        "disableOOMKiller": True,
        "useHierarchy": True,
        "checkBeforeUpdate": True,
    },
    "cpu": {
        "shares": 512,
        "quota": 20000,
        "burst": 1000,
        "period": 100000,
        "realtimeRuntime": 950,
        "realtimePeriod": 1000,
        "cpus": "0-1",
        "mems": "0",
        "idle": 1,
    },
    "pids": {"limit": 100},
    "blockIO": {
        "weight": 500,
        "leafWeight": 300,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 600, "leafWeight": 200}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}],
    },
    "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
    "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
    "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
    "unified": {"memory.high": "1073741824"},
}


def test_parses_what_docker_sends() -> None:
    r = parse_resources(DOCKER)
    assert r.devices is not None
    assert r.devices[0] == DeviceRule(allow=False, type="a", major=None, minor=None, access="rwm")
    assert r.devices[-1] == DeviceRule(allow=False, type="c", major=10, minor=229, access="rwm")
    assert r.memory == Memory(limit=67108864, swap=134217728, disable_oom_killer=False)
    assert r.cpu == CPU(shares=0, quota=50000, period=100000)
    assert r.pids == Pids(limit=50)
    assert r.block_io is not None and r.block_io.weight == 0
    assert r.hugepage_limits is None and r.network is None and r.unified is None


def test_every_field_round_trips_through_to_dict() -> None:
    r = parse_resources(FULL)
    assert r.block_io is not None and r.block_io.throttle_read_iops == [
        ThrottleDevice(major=8, minor=0, rate=100)
    ]
    assert r.memory is not None and r.memory.kernel_tcp == 1 << 20
    assert r.cpu is not None and r.cpu.realtime_runtime == 950 and r.cpu.idle == 1
    assert r.rdma is not None and r.rdma["mlx5_1"].hca_objects == 10000
    out = r.to_dict()
    # The device rule gains its defaults (minor=None is omitted; access kept).
    assert out["devices"] == [{"allow": True, "type": "b", "major": 8, "access": "r"}]
    assert {k: v for k, v in out.items() if k != "devices"} == {
        k: v for k, v in FULL.items() if k != "devices"
    }
    assert parse_resources(json.loads(json.dumps(out))) == r


def test_absent_and_null_mean_unset() -> None:
    r = parse_resources({"memory": {"limit": None}, "cpu": None})
    assert r.memory == Memory()
    assert r.cpu is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"memory": {"limit": "1g"}}, "linux.resources.memory.limit: must be an integer"),
        ({"memory": {"limit": 1.5}}, "linux.resources.memory.limit: must be an integer"),
        ({"memory": {"limit": True}}, "linux.resources.memory.limit: must be an integer"),
        (
            {"memory": {"limit": -2}},
            "linux.resources.memory.limit: must be -1 (unlimited) or a byte count",
        ),
        (
            {"memory": {"swappiness": 101}},
            "linux.resources.memory.swappiness: must be between 0 and 100",
        ),
        (
            {"memory": {"disableOOMKiller": 1}},
            "linux.resources.memory.disableOOMKiller: must be a boolean",
        ),
        ({"memory": []}, "linux.resources.memory: must be an object"),
        ([], "linux.resources: must be an object"),
        (
            {"cpu": {"shares": -1}},
            f"linux.resources.cpu.shares: must be between 0 and {(1 << 64) - 1}",
        ),
        ({"cpu": {"idle": 2}}, "linux.resources.cpu.idle: must be between 0 and 1"),
        (
            {"cpu": {"quota": -5}},
            "linux.resources.cpu.quota: must be -1 (unlimited) or a positive number of "
            "microseconds",
        ),
        ({"cpu": {"cpus": "0-a"}}, "linux.resources.cpu.cpus: '0-a' is not a list like '0-3,6'"),
        ({"devices": [{"type": "c"}]}, "linux.resources.devices[0].allow: is required"),
        (
            {"devices": [{"allow": True, "type": "x"}]},
            "linux.resources.devices[0].type: must be 'a', 'b' or 'c', not 'x'",
        ),
        (
            {"devices": [{"allow": True, "access": "rx"}]},
            "linux.resources.devices[0].access: must be a combination of 'r', 'w' and 'm', "
            "not 'rx'",
        ),
        ({"devices": {}}, "linux.resources.devices: must be an array"),
        (
            {"blockIO": {"weight": 5}},
            "linux.resources.blockIO.weight: must be between 10 and 1000",
        ),
        (
            {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
            "linux.resources.blockIO.throttleReadBpsDevice[0].minor: is required",
        ),
        (
            {"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
            "linux.resources.hugepageLimits[0].pageSize: '2M' is not a size like '2MB' or '1GB'",
        ),
        (
            {"network": {"classID": 1 << 32}},
            f"linux.resources.network.classID: must be between 0 and {(1 << 32) - 1}",
        ),
        (
            {"network": {"priorities": [{"name": "a b", "priority": 1}]}},
            "linux.resources.network.priorities[0].name: must be an interface name",
        ),
        (
            {"unified": {"../memory.max": "1"}},
            "linux.resources.unified.../memory.max: must name a cgroup v2 interface file such "
            "as 'memory.high'",
        ),
        ({"unified": {"memory.high": 5}}, "linux.resources.unified.memory.high: must be a string"),
    ],
)
def test_invalid_values_name_the_field(doc: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_resources(doc)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_swappiness_minus_one_means_kernel_default() -> None:
    assert parse_resources({"memory": {"swappiness": -1}}).memory == Memory()
    assert parse_resources({"memory": {"swappiness": (1 << 64) - 1}}).memory == Memory()


def test_device_wildcard_minus_one_is_none() -> None:
    r = parse_resources({"devices": [{"allow": True, "type": "c", "major": -1, "minor": -1}]})
    assert r.devices == [DeviceRule(allow=True, type="c", major=None, minor=None, access="rwm")]


def test_merge_update_overrides_only_what_the_update_sets() -> None:
    base = parse_resources(FULL)
    update = parse_resources(
        {
            "memory": {"limit": 2 << 30, "swap": -1},
            "cpu": {"quota": 50000},
            "hugepageLimits": [{"pageSize": "1GB", "limit": 1 << 30}],
            "unified": {"pids.max": "10"},
            "blockIO": {"throttleReadBpsDevice": []},
        }
    )
    merged = merge_update(base, update)
    assert merged.memory is not None and base.memory is not None
    assert merged.memory.limit == 2 << 30 and merged.memory.swap == -1
    assert merged.memory.reservation == base.memory.reservation
    assert merged.cpu is not None and merged.cpu.quota == 50000 and merged.cpu.period == 100000
    assert merged.cpu.cpus == "0-1"
    assert merged.devices == base.devices and merged.pids == base.pids
    assert merged.hugepage_limits == [
        HugepageLimit(page_size="2MB", limit=4194304),
        HugepageLimit(page_size="1GB", limit=1 << 30),
    ]
    assert merged.unified == {"memory.high": "1073741824", "pids.max": "10"}
    assert merged.block_io is not None and merged.block_io.throttle_read_bps == []
    assert merged.block_io.weight == 500
    # The inputs are left as they were.
    assert base == parse_resources(FULL)


def test_merge_into_empty_base() -> None:
    update = Resources(pids=Pids(limit=5))
    assert merge_update(Resources(), update) == update
    assert merge_update(update, Resources()) == update


def test_records_reject_unknown_fields() -> None:
    with pytest.raises(TypeError):
        Memory(limitt=1)
