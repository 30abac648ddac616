import numpy as np
import pytest

import mcbackend as mcb
from mcbackend.testing import BackendConformance


class TestZarrLocal(BackendConformance):
    many_draws = 300

    @pytest.fixture
    def backend(self, tmp_path):
        return mcb.ZarrBackend(
            str(tmp_path / "runs"), format_version=1, flush_every=8, flush_seconds=None
        )

    def reopen(self, backend, run):
        return mcb.ZarrBackend(str(backend.location.path)).get_run(run.meta.rid)


class TestZarrSmallChunks(TestZarrLocal):
    """Flushes that straddle chunk boundaries (3 draws a flush, 4 draws a chunk)."""

    @pytest.fixture
    def backend(self, tmp_path):
        return mcb.ZarrBackend(
            str(tmp_path), format_version=1, chunk_draws=4, flush_every=3, flush_seconds=None
        )


class TestZarrMemoryUnflushed(BackendConformance):
    """Reads in the writing process include draws that were never flushed."""

    many_draws = 300

    @pytest.fixture
    def backend(self):
        url = f"memory://zarr-{np.random.randint(10**9)}"
        return mcb.ZarrBackend(url, format_version=1, flush_every=5, flush_seconds=None)

    def finish(self, run):
        pass


@pytest.mark.s3
class TestZarrS3(BackendConformance):
    """The whole suite against a real S3-protocol server (moto) through s3fs."""

    many_draws = 100

    @pytest.fixture
    def backend(self, s3_bucket, s3_options):
        return mcb.ZarrBackend(
            f"{s3_bucket}/runs", s3_options, format_version=1, flush_every=16, flush_seconds=None
        )

    def reopen(self, backend, run):
        return mcb.open_run(
            f"{backend.location.url()}/{run.meta.rid}", backend.location.storage_options
        )


class TestZarrV2Local(TestZarrLocal):
    """Layout v2 (formats/zarr.md): the whole suite, chunks of 64 bytes so flushes straddle
    chunk boundaries and chains end inside a chunk."""

    @pytest.fixture
    def backend(self, tmp_path):
        return mcb.ZarrBackend(
            str(tmp_path / "runs"), format_version=2, chunk_bytes=64, flush_every=7,
            flush_seconds=None,
        )  # fmt: skip


class TestZarrV2Memory(TestZarrMemoryUnflushed):
    @pytest.fixture
    def backend(self):
        url = f"memory://zarr-{np.random.randint(10**9)}"
        return mcb.ZarrBackend(url, format_version=2, flush_every=5, flush_seconds=None)


@pytest.mark.s3
class TestZarrV2S3(TestZarrS3):
    @pytest.fixture
    def backend(self, s3_bucket, s3_options):
        return mcb.ZarrBackend(
            f"{s3_bucket}/runs", s3_options, format_version=2, chunk_bytes=256, flush_every=16,
            flush_seconds=None,
        )  # fmt: skip
