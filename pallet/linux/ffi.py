"""The C types and calls pallet.linux needs, built on CPython's ``_ctypes`` directly.

``import ctypes`` costs ~5 ms here, ~4 ms of it in ctypes/__init__.py building types
and callbacks the runtime never uses; the runtime's whole budget is ~20 ms. This module
defines the handful of types it does use on the same C core (``_ctypes``), the way
ctypes/__init__.py itself does, for ~1 ms.
"""

from __future__ import annotations

import _ctypes
from _ctypes import (
    FUNCFLAG_CDECL,
    FUNCFLAG_USE_ERRNO,
    CFuncPtr,
    Structure,
    _SimpleCData,
    byref,
    get_errno,
    sizeof,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

    _Int: TypeAlias = _SimpleCData[int]
    _Bytes: TypeAlias = _SimpleCData[bytes | None]
else:
    _Int = _Bytes = _SimpleCData

__all__ = [
    "Library", "Structure", "byref", "c_char_p", "c_int", "c_long", "c_size_t", "c_uint",
    "c_uint32", "c_uint64", "c_ulong", "get_errno", "sizeof",
]


class c_int(_Int):
    _type_ = "i"


class c_uint(_Int):
    _type_ = "I"


class c_long(_Int):
    _type_ = "l"


class c_ulong(_Int):
    _type_ = "L"


class c_uint32(_Int):
    _type_ = "I"


class c_uint64(_Int):
    _type_ = "Q"


class c_char_p(_Bytes):
    _type_ = "z"


c_size_t = c_ulong


class _IntFunction(CFuncPtr):
    """A C function returning int, with errno captured (ctypes' use_errno=True)."""

    _flags_ = FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _LongFunction(CFuncPtr):
    """A C function returning long (syscall(2)), with errno captured."""

    _flags_ = FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO
    _restype_ = c_long


class Library:
    """A shared library opened once by soname (dlopen RTLD_NOW)."""

    def __init__(self, soname: str) -> None:
        self._handle = _ctypes.dlopen(soname, 2)
        self.name = soname

    def function(self, name: str, argtypes: list[type] | None = None,
                 returns_long: bool = False) -> CFuncPtr:
        """The C function ``name``; it returns int unless ``returns_long``."""
        kind = _LongFunction if returns_long else _IntFunction
        fn = kind((name, self))  # type: ignore[arg-type]  # any object with _handle will do
        if argtypes is not None:
            fn.argtypes = argtypes
        return fn
