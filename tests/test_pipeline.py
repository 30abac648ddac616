"""The write pipeline of file chains: order, bounds and failures, with real buffers and threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mcbackend._validation import VariableSpec
from mcbackend.files import DrawBuffer, WriteFailed, WritePipeline
from mcbackend.files.encoding import encode_many
from mcbackend.files.pipeline import MAX_BYTES_IN_FLIGHT, MAX_IN_FLIGHT


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


def test_four_writes_in_flight_by_default_one_or_more_on_request():
    """Double buffering: a buffer handed over while the previous one is still being written
    does not wait for it; the next one does (the bound)."""
    store = Store()
    store.gate.clear()
    for max_in_flight, expected in [(None, 4), (1, 1), (3, 3)]:
        bound = {} if max_in_flight is None else {"max_in_flight": max_in_flight}
        pipeline = WritePipeline(store.write, name="b", **bound)
        with pipeline.lock:
            for i in range(expected):  # none of these waits: the writer thread is held
                pipeline.submit(buffer_of([i]), 1)
            in_flight = len(pipeline._in_flight)
            store.gate.set()
            pipeline.submit(buffer_of([expected]), 1)  # the bound: waits for the oldest
            committed = pipeline.committed
            pipeline.wait()
        store.gate.clear()
        assert in_flight == expected and committed >= 1
        pipeline.close()
    assert MAX_IN_FLIGHT == 4


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


def test_consecutive_writes_encode_at_once_and_store_in_order():
    """Encode steps of consecutive writes run on the encode pool's two workers at the same
    time (each waits for the other at a barrier); their stores still run in order."""
    both_encoding = threading.Barrier(2, timeout=10)
    stored: list[int] = []

    def plan(buffer, start, n):
        def encode():
            both_encoding.wait()
            return lambda: stored.append(start)

        return encode

    pipeline = WritePipeline(plan=plan, name="e", max_in_flight=2)
    with pipeline.lock:
        pipeline.submit(buffer_of([0.0]), 1)
        pipeline.submit(buffer_of([1.0]), 1)
        pipeline.wait()
    assert stored == [0, 1] and pipeline.committed == 2
    assert MAX_BYTES_IN_FLIGHT >= 64 << 20  # a documented default, not a tiny one
    pipeline.close()


def test_encode_many_encodes_two_shares_at_once_and_keeps_keys():
    both_encoding = threading.Barrier(2, timeout=10)  # each call waits for one of the other share

    def encode(value: int) -> bytes:
        both_encoding.wait()
        return bytes([value])

    items = {f"k{i}": i for i in range(10)}
    encoded = encode_many(encode, items, weight=lambda v: 1)
    assert encoded == {k: bytes([v]) for k, v in items.items()}
    assert list(encoded) == list(items)


def test_no_private_threading_api():
    import inspect

    from mcbackend.files import flusher, pipeline

    for module in (flusher, pipeline):
        assert "_register_atexit" not in inspect.getsource(module)


def test_a_retry_plans_on_writers_rebuilt_from_storage(tmp_path, monkeypatch):
    """Planning a write advances the writers' state (Parquet v2: whether warm-up goes on);
    after a failed write the retry plans only once the writers are rebuilt from storage, so
    the failed plan leaves no trace: draw 0 stays warm-up (it would not if the failed plan's
    "warm-up is over" carried over to the retry)."""
    pytest.importorskip("pyarrow")
    import pandas as pd

    import mcbackend as mcb
    from mcbackend.errors import FlushError
    from mcbackend.meta import Variable
    from mcbackend.testing import make_meta

    backend = mcb.ParquetBackend(str(tmp_path), flush_every=1024, flush_seconds=None)
    meta = make_meta([Variable("a", "float64", [])], [Variable("tune", "bool", [])])
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    store = chain._store_part
    failures = [OSError("disk full")]  # the store step fails once, after planning

    def failing_once(*args):
        if failures:
            raise failures.pop()
        store(*args)

    monkeypatch.setattr(chain, "_store_part", failing_once)
    for t in [True, False]:
        chain.append({"a": 0.0}, {"tune": t})
    with pytest.raises(FlushError, match="disk full"):
        chain.flush()
    chain.append({"a": 0.0}, {"tune": False})
    run.close()
    df = pd.read_parquet(tmp_path / run.meta.rid).sort_values("draw")
    assert df["draw"].tolist() == [0, 1, 2]
    assert df["warmup"].tolist() == [True, False, False]
