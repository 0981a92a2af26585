"""The runtime's own executable is out of the container's reach (CVE-2019-5736 class).

Until `start`, a created container's init is still the host's Python interpreter; a
process exec'd into the container must not be able to reach it through /proc/1/exe.
"""

from __future__ import annotations

import pytest

from tests.support.runtime import Bundle, Runtime

pytestmark = pytest.mark.root


def test_created_init_exe_is_unreachable_then_user_program_is_visible(
    rt: Runtime, bundle: Bundle
) -> None:
    bundle.process["args"] = ["sleep", "1000"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, cid)
    probe = rt("exec", cid, "sh", "-c", "readlink /proc/1/exe; cat /proc/1/exe >/dev/null",
               check=False)
    assert probe.returncode != 0
    assert "python" not in probe.stdout
    assert "Permission denied" in probe.stderr or "Operation not permitted" in probe.stderr
    rt("start", cid)
    after = rt("exec", cid, "readlink", "/proc/1/exe")
    assert after.stdout.strip() in ("/bin/busybox", "/usr/bin/sleep", "/bin/sleep")
