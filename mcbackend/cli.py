"""The ``mcbackend`` command: list, inspect, summarise, copy, export and verify runs.

Run URLs are paths or fsspec URLs of a run directory (``s3://bucket/runs/<rid>``), a zip
archive made by ``export`` (``run.zip``), or ``clickhouse://host:port/database/<rid>``.
Storage options come from ``--storage-options`` or the ``MCBACKEND_STORAGE_OPTIONS``
environment variable (JSON), plus whatever the filesystem reads itself (e.g. AWS_* for S3).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import click

from . import registry
from ._cli_errors import describe_error
from .core import Run
from .errors import RunNotFoundError
from .files import FileRun, Location, list_runs, read_run_info
from .files.storage import reaching
from .urls import open_backend, open_run, split_format, url_owner

__all__ = ["main"]


def _storage_options(value: str | None) -> dict[str, Any]:
    raw = value or os.environ.get("MCBACKEND_STORAGE_OPTIONS") or "{}"
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as ex:
        raise click.BadParameter(f"storage options are not JSON: {ex}") from None
    if not isinstance(options, dict):
        raise click.BadParameter("storage options must be a JSON object")
    return options


storage_option = click.option(
    "--storage-options",
    "-o",
    "options",
    default=None,
    help="fsspec storage options as JSON (default: $MCBACKEND_STORAGE_OPTIONS).",
)


class _Commands(click.Group):
    """The ``mcbackend`` group: errors become one line on stderr and exit code 1 (``--debug``
    shows the traceback), and a reader that stops early (``| head``) ends the command quietly
    with exit code 0, like other Unix tools."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return result
        except BrokenPipeError:
            _discard_stdout()
            ctx.exit(0)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as ex:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(describe_error(ex)) from None


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (e.g. captured output)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@click.group(cls=_Commands)
@click.version_option(package_name="mcbackend")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
def main(debug: bool) -> None:
    """Store, inspect and share MCMC runs (Zarr, Parquet, ClickHouse)."""
    if not debug:  # the driver logs a traceback for each failed connection attempt
        logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)


@main.command("ls")
@click.argument("root")
@storage_option
def list_command(root: str, options: str | None) -> None:
    """List the runs under ROOT (a directory URL, a zip archive made by ``export``, or
    clickhouse://host:port/database)."""
    opts = _storage_options(options)
    rows: list[tuple[str, Any, Run]]
    if root.endswith(".zip"):
        archived = open_run(root, opts)
        assert isinstance(archived, FileRun)  # an archive holds a file run
        rows = [(archived.meta.rid, read_run_info(archived.location).created_at, archived)]
    elif url_owner(root) is not None:
        backend = open_backend(root)
        rows = [
            (r.rid, r.created_at, backend.get_run(r.rid)) for r in backend.get_runs().itertuples()
        ]
    else:
        location = Location.from_url(split_format(root)[1], opts)
        with reaching(location):
            if not location.fs.isdir(location.path):
                raise RunNotFoundError(f"No directory at {location}.")
            infos = list_runs(location)
        rows = [(i.rid, i.created_at, open_run(location.url(i.rid), opts)) for i in infos]
    click.echo(f"{'rid':20s} {'created':26s} {'chains':>6s} {'draws':>8s}  variables")
    for rid, created, run in rows:
        chains = run.get_chains()
        draws = sum(len(c) for c in chains)
        names = ", ".join(v.name for v in run.meta.variables)
        click.echo(f"{rid:20s} {str(created)[:26]:26s} {len(chains):6d} {draws:8d}  {names}")
    if not rows:
        click.echo("(no runs)")


@main.command()
@click.argument("url")
@storage_option
def info(url: str, options: str | None) -> None:
    """Metadata, variables, chain lengths and size on storage of the run at URL."""
    from ._inferencedata import attributes_to_python

    run = open_run(url, _storage_options(options))
    click.echo(f"run:      {run.meta.rid}")
    click.echo(f"backend:  {type(run).__name__}")
    location = getattr(run, "location", None)
    if location is not None:
        marker = read_run_info(location)
        click.echo(f"format:   {marker.format} v{marker.format_version}")
        click.echo(f"size:     {_human(location.fs.du(location.path))}")
    for key, value in attributes_to_python(run.meta.attributes).items():
        click.echo(f"  {key}: {value}")
    click.echo("variables:")
    for kind, group in [("draw", run.meta.variables), ("stat", run.meta.sample_stats)]:
        for v in group:
            shape = "?" if v.undefined_ndim else tuple("?" if s <= 0 else s for s in v.shape)
            dims = f" dims={list(v.dims)}" if v.dims else ""
            det = " deterministic" if v.is_deterministic else ""
            click.echo(f"  [{kind}] {v.name}: {v.dtype} shape={shape}{dims}{det}")
    for d in run.meta.data:
        click.echo(
            f"  [{'observed' if d.is_observed else 'constant'}] {d.name}: dims={list(d.dims)}"
        )
    click.echo("chains:")
    for chain in run.get_chains():
        click.echo(f"  {chain.cmeta.chain_number}: {len(chain)} draws")


@main.command()
@click.argument("url")
@storage_option
@click.option("--var", "var_names", multiple=True, help="Only these variables.")
def summary(url: str, options: str | None, var_names: tuple[str, ...]) -> None:
    """ArviZ summary (mean, sd, HDI, R-hat, ESS) of the run's posterior."""
    import arviz as az

    run = open_run(url, _storage_options(options))
    dt = run.to_inferencedata()
    table = az.summary(dt, var_names=list(var_names) or None, ci_kind="hdi")
    click.echo(table.to_string())


@main.command()
@click.argument("source")
@click.argument("destination")
@storage_option
@click.option("--dest-storage-options", default=None, help="Storage options of DESTINATION.")
@click.option("--batch", default=1000, show_default=True, help="Draws copied at a time.")
@click.option(
    "--create-bucket", is_flag=True, help="Create DESTINATION's S3 bucket if it does not exist."
)
@click.option(
    "--format-version",
    type=int,
    default=None,
    help="Layout version of the copy (file formats; e.g. 2 turns a Zarr v1 run into v2).",
)
def copy(
    source: str,
    destination: str,
    options: str | None,
    dest_storage_options: str | None,
    batch: int,
    create_bucket: bool,
    format_version: int | None,
) -> None:
    """Copy the run at SOURCE into the root DESTINATION.

    DESTINATION is ``zarr+URL`` or ``parquet+URL`` (plain URLs mean Zarr) or
    ``clickhouse://host:port/database``.
    """
    from ._copying import copy_run

    run = open_run(source, _storage_options(options))
    dest_opts = (
        _storage_options(dest_storage_options)
        if dest_storage_options
        else _storage_options(options)
    )
    extra: dict[str, Any] = {"create_bucket": True} if create_bucket else {}
    if format_version is not None:
        extra["format_version"] = format_version
    backend = open_backend(destination, dest_opts, **extra)
    copied = copy_run(run, backend, batch=batch, progress=True)
    click.echo(f"copied {copied.meta.rid} ({sum(len(c) for c in copied.get_chains())} draws)")


@main.command()
@click.argument("url")
@click.argument("archive", type=click.Path(dir_okay=False))
@storage_option
@click.option(
    "--format", "fmt", default="zarr", show_default=True, help="A file format: zarr, parquet..."
)
def export(url: str, archive: str, options: str | None, fmt: str) -> None:
    """Write the run at URL into one zip ARCHIVE that open_run("zip://<rid>::ARCHIVE") or
    this tool (``mcbackend info ARCHIVE``) open."""
    from ._copying import export_archive

    if not archive.endswith(".zip"):
        raise click.BadParameter("the archive name must end in .zip", param_hint="ARCHIVE")
    if not _is_file_format(fmt):
        raise click.BadParameter(f"{fmt!r} is not a file format", param_hint="--format")
    run = open_run(url, _storage_options(options))
    export_archive(run, archive, fmt, progress=True)
    click.echo(f"exported {run.meta.rid} to {archive} (open with: mcbackend info {archive})")


@main.command()
@click.argument("url")
@storage_option
def verify(url: str, options: str | None) -> None:
    """Check every stored chunk / row group of the run against its checksum."""
    run = open_run(url, _storage_options(options))
    problems = run.verify()
    for problem in problems:
        click.echo(f"CORRUPT {problem}")
    if problems:  # before listing chains: a lost chain document makes that raise
        raise click.ClickException(f"{len(problems)} problem(s) in run {run.meta.rid}")
    draws = sum(len(c) for c in run.get_chains())
    click.echo(f"OK {run.meta.rid}: {len(run.get_chains())} chains, {draws} draws verified")


@main.command()
@click.argument("url")
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, help="TCP port.")
def serve(url: str, options: str | None, host: str, port: int) -> None:
    """Watch the runs under URL in a browser (read-only; needs mcbackend[viewer]).

    URL is a directory of Zarr/Parquet runs (local or fsspec, e.g. s3://bucket/runs) or
    clickhouse://host:port/database.
    """
    try:
        from .viewer import serve as serve_viewer
    except ImportError as ex:
        raise click.ClickException(f"{ex}; install: pip install 'mcbackend[viewer]'") from None
    serve_viewer(url, _storage_options(options), host=host, port=port, echo=click.echo)


def _is_file_format(fmt: str) -> bool:
    from .files import FileBackend

    return registry.is_format(fmt) and issubclass(registry.backend_class(fmt), FileBackend)


def _human(size: float) -> str:
    for unit in ["B", "KiB", "MiB", "GiB"]:
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
