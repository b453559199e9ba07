"""Background threads that overlap a transfer's disk and hashing work with its network work.

Reading, hashing and writing release the GIL, so a bounded queue between a worker thread and the
thread that talks to gRPC lets both run at once; memory stays at most `depth` items.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """Iterates `source` on a background thread, up to `depth` items ahead of the consumer.

    The source's error is raised to the consumer in order. `close` (or leaving a `with` block)
    stops the producer and waits for it; without it a consumer that stops early (a cancelled
    call) leaves the thread lingering.
    """

    def __init__(self, source: Iterator[T], depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[T | None, BaseException | None, bool]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._produce, args=(source,), name="transfer-read-ahead", daemon=True
        )
        self._thread.start()

    def _produce(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if self._stop.is_set():
                    return
                self._queue.put((item, None, False))
        except BaseException as exc:  # raised to the consumer
            if not self._stop.is_set():
                self._queue.put((None, exc, True))
            return
        if not self._stop.is_set():
            self._queue.put((None, None, True))

    def __iter__(self) -> ReadAhead[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item, error, last = self._queue.get()
        if last:
            self._finished = True
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the producer, wait for its thread, and end the iteration."""
        self._stop.set()
        self._drain()  # a producer blocked on a full queue can put its last item and see the stop
        self._thread.join()
        self._drain()
        self._queue.put_nowait((None, None, True))  # wakes a consumer blocked on the empty queue

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


class PipelinedSink:
    """Hashes and writes blocks on a background thread, so receiving the next chunk overlaps
    with hashing and writing this one (both release the GIL). The queue is bounded, so memory
    stays at most `depth` chunks; an error in the worker is raised on the next `put` or `close`.
    """

    def __init__(self, write: Callable[[bytes], object], hasher: hashlib._Hash, depth: int = 4):
        self._write = write
        self._hasher = hasher
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="transfer-sink", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (block := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._hasher.update(block)
                    self._write(block)
                except BaseException as exc:  # surfaced to the producer thread
                    self._error = exc

    def put(self, block: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(block)

    def close(self) -> None:
        """Wait until every block is hashed and written; raise the worker's error if any."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> PipelinedSink:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
