"""A readable file over chunks of bytes that arrive one by one (an iterator, a queue).

tarfile and shutil read such streams a few kB at a time from chunks of a MiB: handing
out views of the current chunk, never copies of what is left of it, keeps a read
proportional to what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


class ChunkReader:
    """``read(n)`` over the chunks ``next_chunk`` returns, None at the end (it may also
    raise, and the reader passes that on)."""

    def __init__(self, next_chunk: Callable[[], bytes | None]) -> None:
        self._next = next_chunk
        self._buf = memoryview(b"")
        self._ended = False

    @classmethod
    def over(cls, chunks: Iterator[bytes]) -> ChunkReader:
        return cls(lambda: next(chunks, None))

    def read(self, n: int = -1) -> bytes:
        out: list[bytes] = []
        want = n
        while want != 0:
            if not self._buf:
                chunk = None if self._ended else self._next()
                if chunk is None:
                    self._ended = True
                    break
                self._buf = memoryview(chunk)
                continue
            take = self._buf if want < 0 else self._buf[:want]
            out.append(bytes(take))
            self._buf = self._buf[len(take):]
            if want > 0:
                want -= len(take)
        return b"".join(out)
