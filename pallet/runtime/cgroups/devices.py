"""The devices controller: v1 rule writing, and what cgroup v2 can (not) do here.

v1: the runc approach — write "a" to devices.deny (deny everything, drop all exceptions),
then each rule in order to devices.allow / devices.deny. Writing "a" briefly denies every
device to processes already inside, so a re-apply (``update``) first compares the result
the rules would give with devices.list and skips the writes when they agree.

v2: device access is an eBPF program attached to the cgroup (BPF_CGROUP_DEVICE). Loading
one needs the bpf(2) syscall, which lives with ctypes in pallet/linux and is not written
yet. Until it is, v2 device rules are NOT enforced; ``check_v2`` accepts the rule lists
every engine sends (deny-all followed by allows) and refuses "allow everything except
these devices", since silently ignoring a deny aimed at one device would be a security
surprise. ``Cgroup.devices_enforced`` lets the runtime warn.
"""

from __future__ import annotations

from pallet.errors import NotSupported
from pallet.oci.resources import DeviceRule

from . import fs

_ALL = "a *:* rwm"

# (type, major, minor, access) runc appends after the spec's own rules, so every
# container can use its /dev basics whatever the config says. None is the '*' wildcard.
# (runc 1.0/1.1 also allowed c 10:200, /dev/net/tun; newer runc does not, nor do we.)
DEFAULT_ALLOWED: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"),  # mknod of any char device; opening it is still denied
    ("b", None, None, "m"),
    ("c", 1, 3, "rwm"),  # /dev/null
    ("c", 1, 5, "rwm"),  # /dev/zero
    ("c", 1, 7, "rwm"),  # /dev/full
    ("c", 1, 8, "rwm"),  # /dev/random
    ("c", 1, 9, "rwm"),  # /dev/urandom
    ("c", 5, 0, "rwm"),  # /dev/tty
    ("c", 5, 2, "rwm"),  # /dev/ptmx
    ("c", 136, None, "rwm"),  # /dev/pts/*
)


def with_defaults(rules: list[DeviceRule] | None) -> list[DeviceRule]:
    """``rules`` followed by runc's default allow-list (what runc's specconv does).

    The runtime's spec conversion calls this; Cgroup.apply writes exactly what it is given.
    """
    defaults = [
        DeviceRule(allow=True, type=t, major=ma, minor=mi, access=acc)
        for t, ma, mi, acc in DEFAULT_ALLOWED
    ]
    return [*(rules or []), *defaults]


def rule_text(rule: DeviceRule) -> str:
    """The devices.allow/deny line: "c 1:3 rwm", or "a" for every device."""
    if rule.type == "a":
        return "a"
    major = "*" if rule.major is None else str(rule.major)
    minor = "*" if rule.minor is None else str(rule.minor)
    return f"{rule.type} {major}:{minor} {rule.access}"


def emulate(rules: list[DeviceRule]) -> tuple[bool, dict[tuple[str, str, str], str]]:
    """The kernel's state after writing deny-all then ``rules``, as v1 keeps it.

    Returns (default_allow, exceptions): exceptions map (type, major, minor) to access
    and mean "allowed" when the default is deny, "denied" when it is allow.
    """
    default_allow = False
    exceptions: dict[tuple[str, str, str], set[str]] = {}
    for rule in rules:
        if rule.type == "a":
            default_allow = rule.allow
            exceptions.clear()
            continue
        key = (
            rule.type,
            "*" if rule.major is None else str(rule.major),
            "*" if rule.minor is None else str(rule.minor),
        )
        have = exceptions.setdefault(key, set())
        if rule.allow != default_allow:
            have.update(rule.access)
        else:
            have.difference_update(rule.access)
        if not have:
            del exceptions[key]
    return default_allow, {k: "".join(c for c in "rwm" if c in v) for k, v in exceptions.items()}


def _expected_list(rules: list[DeviceRule]) -> set[str] | None:
    """devices.list after writing deny-all then ``rules``; None if we cannot predict it.

    The kernel prints only "a *:* rwm" in default-allow mode (its deny exceptions are
    invisible), so a list that ends in allow-all with exceptions is not comparable.
    """
    default_allow, exceptions = emulate(rules)
    if default_allow:
        return None if exceptions else {_ALL}
    return {f"{t} {ma}:{mi} {acc}" for (t, ma, mi), acc in exceptions.items()}


def apply_v1(directory: str, rules: list[DeviceRule]) -> None:
    """Make the v1 devices cgroup at ``directory`` enforce ``rules`` (deny-all first)."""
    current = fs.read_opt(directory, "devices.list")
    expected = _expected_list(rules)
    if (
        current is not None
        and expected is not None
        and {line.strip() for line in current.splitlines() if line.strip()} == expected
    ):
        return
    fs.write(directory, "devices.deny", "a")
    for rule in rules:
        fs.write(directory, "devices.allow" if rule.allow else "devices.deny", rule_text(rule))


def check_v2(rules: list[DeviceRule]) -> None:
    """Raise NotSupported for rules that single out a device to deny on cgroup v2.

    Engines send deny-all plus an allow-list (docker adds a deny of /dev/fuse that the
    deny-all already covers): accepted, and not enforced. "Allow all but X" states an
    intent to block X specifically, which pallet cannot honour without eBPF.
    """
    default_allow, exceptions = emulate(rules)
    if default_allow and exceptions:
        (kind, major, minor), access = next(iter(exceptions.items()))
        raise NotSupported(
            f"cgroups: device rule 'deny {kind} {major}:{minor} {access}' cannot be enforced: "
            "cgroup v2 device control needs an eBPF program, which pallet does not load yet",
            op="apply",
            obj="devices",
        )
