"""The installed ``mcbackend`` command as a process: pipes closed early, exit codes, and errors
as one line (``--debug`` for the traceback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mcbackend as mcb

from .conftest import CLICKHOUSE_HOST, free_port
from .test_cli import make_run

EXE = shutil.which("mcbackend", path=os.path.dirname(sys.executable))


def run_cli(*args: str, env: dict | None = None, timeout: float = 180):
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture
def run_dir(tmp_path):
    make_run(mcb.ZarrBackend(str(tmp_path / "runs")))
    return tmp_path / "runs" / "cli-run"


@pytest.mark.parametrize("command", ["ls", "info", "summary"])
def test_reader_that_stops_early_ends_the_command_quietly(run_dir, command):
    target = str(run_dir.parent if command == "ls" else run_dir)
    proc = subprocess.Popen(
        [EXE, command, target], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()  # like `| head` that has read what it wanted: every write fails
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0 and stderr == ""


def test_pipe_into_head_in_a_shell(run_dir):
    script = f'"{EXE}" info "{run_dir}" | head -n 0; echo "status=${{PIPESTATUS[0]}}"'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=180)
    assert result.stdout.strip() == "status=0" and result.stderr == ""


@pytest.fixture
def no_aws_credentials(s3_endpoint) -> dict:
    """The environment of a user without AWS credentials anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
    )
    return env


@pytest.mark.s3
def test_missing_s3_credentials(s3_endpoint, s3_bucket, no_aws_credentials):
    options = json.dumps({"endpoint_url": s3_endpoint})
    result = run_cli("ls", f"{s3_bucket}/runs", "-o", options, env=no_aws_credentials)
    assert_one_line_error(result, "No S3 credentials", "AWS_ACCESS_KEY_ID")
    debug = run_cli("--debug", "ls", f"{s3_bucket}/runs", "-o", options, env=no_aws_credentials)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "NoCredentialsError" in debug.stderr


@pytest.mark.s3
def test_s3_endpoint_down():
    pytest.importorskip("s3fs")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    options = json.dumps({"endpoint_url": endpoint, "key": "k", "secret": "s"})
    for args in [["ls", "s3://bucket/runs"], ["info", "s3://bucket/runs/r"]]:
        assert_one_line_error(run_cli(*args, "-o", options), f"S3 endpoint {endpoint}")


@pytest.mark.clickhouse
def test_clickhouse_down_or_refusing_the_user(clickhouse_database):
    down = f"clickhouse://127.0.0.1:{free_port()}/{clickhouse_database}"
    assert_one_line_error(run_cli("ls", down), "ClickHouse", "Connection refused")
    assert_one_line_error(run_cli("info", f"{down}/some-run"), "ClickHouse", "Connection refused")
    stranger = f"clickhouse://nosuchuser@{CLICKHOUSE_HOST}:9000/{clickhouse_database}"
    assert_one_line_error(run_cli("ls", stranger), "ClickHouse", "nosuchuser")
    wrong = f"clickhouse://default:wrong@{CLICKHOUSE_HOST}:9000/{clickhouse_database}"
    assert_one_line_error(run_cli("ls", wrong), "ClickHouse", "password")
    debug = run_cli("--debug", "ls", down)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_unknown_format_prefix_is_refused(run_dir, tmp_path):
    result = run_cli("copy", str(run_dir), f"zar+{tmp_path}/copies")
    assert_one_line_error(result, "Unknown format 'zar'", "zarr+URL", "parquet+URL")
    assert not (tmp_path / "zar+").exists() and not list(tmp_path.glob("zar*"))
    with pytest.raises(ValueError, match="Unknown format 'zar'"):
        mcb.open_backend(f"zar+{tmp_path}")
    # A directory whose name holds a '+' is still a directory, written as a path.
    backend = mcb.open_backend(f"{tmp_path}/runs+old")
    assert backend.location.path.endswith("runs+old")
    assert type(mcb.open_backend(f"parquet+{tmp_path}/p")).__name__ == "ParquetBackend"


def test_zip_archives_are_run_urls_everywhere(run_dir, tmp_path):
    archive = tmp_path / "run.zip"
    assert run_cli("export", str(run_dir), str(archive)).returncode == 0
    listed = run_cli("ls", str(archive))
    assert listed.returncode == 0, listed.stderr
    (row,) = listed.stdout.splitlines()[1:]
    assert row.split()[0] == "cli-run" and row.split()[-4:] == ["2", "120", "mu,", "k"]
    run = mcb.open_run(str(archive))
    assert run.meta.rid == "cli-run"
    np.testing.assert_array_equal(
        run.get_chains()[1].get_draws("k"),
        mcb.open_run(str(run_dir)).get_chains()[1].get_draws("k"),
    )


def test_copy_onto_an_existing_run_fails_without_a_progress_bar(run_dir, tmp_path):
    first = run_cli("copy", str(run_dir), f"parquet+{tmp_path}/copies")
    assert first.returncode == 0 and "copied cli-run (120 draws)" in first.stdout
    assert "copy cli-run" in first.stderr  # the progress bar of a copy that happens
    again = run_cli("copy", str(run_dir), f"parquet+{tmp_path}/copies")
    assert_one_line_error(again, "already exists")
    assert "copy cli-run" not in again.stderr and "draw/s" not in again.stderr


@pytest.mark.s3
def test_copy_creates_a_bucket_only_when_asked(run_dir, s3_options):
    bucket = f"mcb-new-{os.urandom(4).hex()}"
    options = json.dumps(s3_options)
    refused = run_cli("copy", str(run_dir), f"zarr+s3://{bucket}/runs", "-o", options)
    assert_one_line_error(refused, f"bucket '{bucket}' does not exist", "--create-bucket")
    made = run_cli(
        "copy", str(run_dir), f"zarr+s3://{bucket}/runs", "-o", options, "--create-bucket"
    )
    assert made.returncode == 0 and "copied cli-run (120 draws)" in made.stdout, made.stderr
    copied = mcb.open_run(f"s3://{bucket}/runs/cli-run", s3_options)
    assert [len(c) for c in copied.get_chains()] == [60, 60]
