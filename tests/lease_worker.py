"""A writer process for the one-writer-per-chain tests (``test_chain_lease.py``).

    python -m tests.lease_worker SPEC_JSON

SPEC: fmt (zarr, zarr2, parquet1, parquet), root, rid, options (storage options),
lease_seconds, mode (``create``: a new run and chain 0; ``race``: ``init_chain(0)`` of an
existing run at wall-clock time ``start_at``, its chains listed before, as when both
processes list them before either creates chain 0; ``resume``: the existing chain 0), then
(``wait``: append ``draws`` draws, flush, print WAITING, wait for a line on stdin, append ``draws``
more and close; ``stop``: append ``draws``, flush, print STOPPED and SIGSTOP itself, then
append on; ``forever``: append, printing the length after each flush), ``offset`` (draw i
holds ``expected_draw(offset + i)``) and ``host`` (pretend to run on that host).
Prints REFUSED, then the error's type and message, when the chain is refused or lost.
"""

import json
import os
import signal
import socket
import sys
import time

import mcbackend as mcb
from mcbackend.errors import ChainLockedError

from .writer_process import expected_draw, meta

FLUSH_EVERY = 5
EXTRA = {
    "zarr": {"format_version": 1},
    "zarr2": {"format_version": 2, "chunk_bytes": 64},
    "parquet1": {"format_version": 1},
    "parquet": {},
}


def backend(spec: dict):
    cls = mcb.ParquetBackend if spec["fmt"].startswith("parquet") else mcb.ZarrBackend
    lease = {"lease_seconds": spec["lease_seconds"]} if "lease_seconds" in spec else {}
    return cls(
        spec["root"],
        spec.get("options"),
        flush_every=FLUSH_EVERY,
        flush_seconds=None,
        **EXTRA[spec["fmt"]],
        **lease,
    )


def say(*words) -> None:
    print(*words, flush=True)


def append(chain, offset: int, n: int) -> None:
    for _ in range(n):
        i = len(chain)
        chain.append(expected_draw(offset + i), {"in_warmup": i < 5})
        if (i + 1) % FLUSH_EVERY == 0:
            say(i + 1)


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("host"):
        socket.gethostname = lambda: spec["host"]
    b = backend(spec)
    offset, n = spec.get("offset", 0), spec.get("draws", 20)
    try:
        if spec["mode"] == "create":
            chain = b.init_run(meta(spec["rid"])).init_chain(0)
        elif spec["mode"] == "race":
            run = b.get_run(spec["rid"])
            listed = run.get_chains()  # both list the chains before either creates chain 0
            run.get_chains = lambda: listed  # type: ignore[method-assign]
            time.sleep(max(spec["start_at"] - time.time(), 0))
            chain = run.init_chain(0)
        else:
            (chain,) = b.get_run(spec["rid"]).get_chains()
        append(chain, offset, n)
        if spec["then"] == "wait":
            chain.flush()
            say("WAITING")
            sys.stdin.readline()
            append(chain, offset, n)
            chain.close()
            say("CLOSED")
        elif spec["then"] == "stop":
            chain.flush()
            say("STOPPED")
            os.kill(os.getpid(), signal.SIGSTOP)
            while True:
                append(chain, offset, 1)
        elif spec["then"] == "forever":
            while True:
                append(chain, offset, 1)
        else:
            chain.close()
            say("CLOSED")
    except (ChainLockedError, ValueError) as ex:
        say("REFUSED")
        say(type(ex).__name__, str(ex).replace("\n", " "))


if __name__ == "__main__":
    main()
