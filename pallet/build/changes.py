"""``--change`` Dockerfile instructions (docker import and commit) into an image config."""

from __future__ import annotations

import json
from typing import Any

from pallet.errors import InvalidArgument

# `--change` instructions docker import accepts.
CHANGE_KEYS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL",
               "USER", "VOLUME", "WORKDIR")


def parse_changes(changes: list[str]) -> dict[str, Any]:
    """``--change`` Dockerfile instructions for import/commit, into an image config."""
    cfg: dict[str, Any] = {}
    for change in changes:
        instr, _, arg = change.strip().partition(" ")
        key = instr.upper()
        arg = arg.strip()
        if key not in CHANGE_KEYS:
            raise InvalidArgument(f"{instr} is not a valid change command")
        if key in ("CMD", "ENTRYPOINT", "VOLUME"):
            value: Any = _json_or_shell(arg, shell=key != "VOLUME")
            if key == "VOLUME":
                cfg.setdefault("Volumes", {}).update({v: {} for v in value})
            else:
                cfg["Cmd" if key == "CMD" else "Entrypoint"] = value
        elif key == "ENV":
            k, eq, v = arg.partition("=")
            if not eq:
                k, _, v = arg.partition(" ")
            cfg.setdefault("Env", []).append(f"{k}={v.strip()}")
        elif key == "EXPOSE":
            for port in arg.split():
                cfg.setdefault("ExposedPorts", {})[port if "/" in port else f"{port}/tcp"] = {}
        elif key == "LABEL":
            k, _, v = arg.partition("=")
            cfg.setdefault("Labels", {})[k.strip('"')] = v.strip('"')
        elif key == "ONBUILD":
            cfg.setdefault("OnBuild", []).append(arg)
        else:
            cfg[{"STOPSIGNAL": "StopSignal", "USER": "User", "WORKDIR": "WorkingDir"}[key]] = arg
    return cfg


def _json_or_shell(arg: str, shell: bool) -> list[str]:
    if arg.startswith("["):
        try:
            value = json.loads(arg)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", arg] if shell else arg.split()
