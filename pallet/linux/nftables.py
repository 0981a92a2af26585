"""libnftables (Debian's libnftables1, what the nft binary is built on), in-process.

One context for the life of the process: the nft binary spends ~20 ms per call setting
itself up (its cache of the ruleset, its parser) and ~1 ms on the command; a long-lived
context pays the set-up once. Commands and scripts are nft's own language; a script
is one kernel transaction, applied whole or not at all.
"""

from __future__ import annotations

import ctypes
import threading

NFT_CTX_DEFAULT = 0


class NftError(Exception):
    """nft refused a command; ``str()`` is nft's own message."""


class Nftables:
    """A libnftables context; calls are serialized (a context is not thread-safe)."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        except OSError as exc:
            raise FileNotFoundError(
                f"libnftables.so.1 (Debian package libnftables1): {exc}") from exc
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
        self._lib = lib
        self._lock = threading.Lock()
        ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            raise OSError(ctypes.get_errno(), "nft_ctx_new failed")
        if lib.nft_ctx_buffer_output(ctx) or lib.nft_ctx_buffer_error(ctx):
            raise OSError(ctypes.get_errno(), "nft_ctx_buffer_output failed")
        self._ctx = ctx

    def run(self, text: str, *, dry_run: bool = False) -> str:
        """Run ``text`` (commands or a whole script); nft's output, or NftError."""
        lib, ctx = self._lib, self._ctx
        with self._lock:
            lib.nft_ctx_set_dry_run(ctx, dry_run)
            try:
                rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
                out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
                err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
            finally:
                lib.nft_ctx_set_dry_run(ctx, False)
        if rc != 0:
            raise NftError(err.strip() or f"nft: error {rc}")
        return out


_shared: Nftables | None = None
_shared_lock = threading.Lock()


def shared() -> Nftables:
    """The process's one context, made on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Nftables()
        return _shared
