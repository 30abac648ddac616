"""The write pipeline of file chains: order, bounds and failures, with real buffers and threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mcbackend._validation import VariableSpec
from mcbackend.files import DrawBuffer, WriteFailed, WritePipeline


def buffer_of(values: list[float]) -> DrawBuffer:
    buffer = DrawBuffer(
        [VariableSpec("x", np.dtype("float64"), (), False)],
        [],
        flush_every=1024,
        flush_seconds=None,
    )
    for v in values:
        buffer.append({"x": np.float64(v)}, {})
    return buffer


class Store:
    """Records writes; ``gate`` holds the writer thread, ``fail_at`` makes a write fail."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.writes: list[tuple[int, list[float]]] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.fail_at = fail_at

    def write(self, buffer: DrawBuffer, start: int, n: int) -> None:
        self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        if start == self.fail_at:
            raise OSError("disk full")
        self.writes.append((start, list(buffer.draws.columns["x"][:n])))


def test_writes_commit_in_order_on_the_writer_thread():
    store, written = Store(), []
    pipeline = WritePipeline(store.write, name="t", on_written=lambda s, b: written.append(s))
    with pipeline.lock:
        for i in range(3):
            pipeline.submit(buffer_of([2 * i, 2 * i + 1]), 2)
        assert pipeline.queued == 6
        pipeline.wait()
        assert pipeline.committed == 6
    assert store.writes == [(0, [0, 1]), (2, [2, 3]), (4, [4, 5])]
    assert written == [0, 2, 4]
    assert store.threads == {"mcbackend-t_0"}
    pipeline.close()


def test_one_write_in_flight_by_default_more_on_request():
    store = Store()
    store.gate.clear()
    for max_in_flight, expected in [(1, 1), (3, 3)]:
        pipeline = WritePipeline(store.write, name="b", max_in_flight=max_in_flight)
        with pipeline.lock:
            for i in range(3):
                if i == max_in_flight:
                    store.gate.set()  # the next submit has to wait for a finished write
                pipeline.submit(buffer_of([i]), 1)
            in_flight = len(pipeline._in_flight)
            store.gate.set()
            pipeline.wait()
        store.gate.clear()
        assert in_flight == expected
        pipeline.close()


def test_memory_bound_limits_the_writes_in_flight():
    store = Store()
    one = buffer_of([1.0])
    pipeline = WritePipeline(store.write, name="m", max_in_flight=8, max_bytes=2 * one.nbytes)
    with pipeline.lock:
        store.gate.clear()
        pipeline.submit(buffer_of([0]), 1)
        pipeline.submit(buffer_of([1]), 1)
        assert len(pipeline._in_flight) == 2
        store.gate.set()
        pipeline.submit(buffer_of([2]), 1)  # over the bound: waits for the oldest
        assert pipeline.committed >= 1
        pipeline.wait()
    assert [s for s, _ in store.writes] == [0, 1, 2]
    pipeline.close()


def test_a_failed_write_returns_its_draws_and_those_after_it():
    store = Store(fail_at=2)
    store.gate.clear()
    pipeline = WritePipeline(store.write, name="f", max_in_flight=4)
    with pipeline.lock:
        for i in range(3):
            pipeline.submit(buffer_of([2 * i, 2 * i + 1]), 2)
        store.gate.set()
        with pytest.raises(WriteFailed) as info:
            pipeline.wait()
    failure = info.value
    assert failure.start == 2 and isinstance(failure.cause, OSError)
    assert [list(b.draws.columns["x"][: len(b)]) for b in failure.buffers] == [[2, 3], [4, 5]]
    assert store.writes == [(0, [0, 1])]  # the write after the failed one never ran
    assert pipeline.committed == 2 and pipeline.queued == 2
    pipeline.close()


def test_no_private_threading_api():
    import inspect

    from mcbackend.files import flusher, pipeline

    for module in (flusher, pipeline):
        assert "_register_atexit" not in inspect.getsource(module)
