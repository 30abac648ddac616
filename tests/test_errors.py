"""The error hierarchy: one base class, and the built-in bases older code catches."""

import pytest

import mcbackend as mcb
from mcbackend import errors


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (mcb.RunNotFoundError, FileNotFoundError),
        (mcb.RunNotFoundError, KeyError),
        (mcb.RunExistsError, ValueError),
        (mcb.CorruptRunError, ValueError),
        (mcb.FormatVersionError, ValueError),
        (mcb.FlushError, OSError),
        (mcb.DrawNotKeptError, mcb.FlushError),
        (mcb.ReadOnlyError, PermissionError),
        (mcb.ChainLockedError, RuntimeError),
        (mcb.BucketNotFoundError, FileNotFoundError),
        (mcb.StorageUnreachableError, ConnectionError),
    ],
)
def test_errors_share_one_base_and_keep_their_builtin(error, builtin):
    assert issubclass(error, mcb.MCBackendError)
    assert issubclass(error, builtin)
    assert error.__module__ == "mcbackend.errors"
    assert getattr(errors, error.__name__) is error


def test_run_not_found_message_is_not_quoted_like_a_key_error():
    assert str(mcb.RunNotFoundError("No run 'x'.")) == "No run 'x'."


def test_numpy_backend_unknown_run():
    with pytest.raises(mcb.RunNotFoundError, match="No run with id 'nope'"):
        mcb.NumPyBackend().get_run("nope")


def test_file_backend_unknown_run(tmp_path):
    pytest.importorskip("zarr")
    with pytest.raises(mcb.RunNotFoundError, match="No run at"):
        mcb.ZarrBackend(str(tmp_path)).get_run("nope")
