"""Where a scale job runs: Daft's native runner in this process, or Ray.

``--runner native`` (the default) runs Daft's multi-threaded engine here. ``--runner ray`` with
an address connects to an existing Ray cluster (KubeRay, ``ray up``); without one it starts a
local Ray for the job and stops it after, with every file it writes under ``LAKE_HOME/ray``
(Ray's session directory, and its ``~/.ray`` token file through ``HOME``), never in ``/tmp/ray``
or the user's home. Ray's own defaults stand otherwise (token authentication included).

Daft fixes its runner once per process, so one process runs jobs on one runner.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from lakehouse.config import Settings
from lakehouse.errors import RayStartFailed, ScaleUnavailable

Runner = Literal["native", "ray"]
SOCKET_ROOM = 40  # 107 bytes of a Unix socket path minus Ray's session/sockets/plasma_store names
START_ATTEMPTS = 3  # a loaded machine can make Ray's raylet miss its start-up deadline
INSTALL_HINT = "install the scale extra: pip install 'lake[scale]' (or `make install`)"


def require_daft() -> Any:
    """The ``daft`` module, or a clear error naming the extra to install."""
    try:
        import daft
    except ImportError as e:
        raise ScaleUnavailable(f"this command runs on Daft: {INSTALL_HINT}") from e
    return daft


def ray_home(settings: Settings) -> Path:
    """Where a local Ray keeps its session files and token (``LAKE_HOME/ray``)."""
    return settings.home.resolve() / "ray"


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for Ray's processes (they inherit the driver's environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def local_ray(settings: Settings) -> Iterator[str]:
    """Start a local Ray (``LAKE_RAY_CPUS`` CPUs, no dashboard, files under ``LAKE_HOME/ray``),
    yield its address, and stop it after."""
    try:
        import ray
    except ImportError as e:
        raise ScaleUnavailable(f"--runner ray needs Ray: {INSTALL_HINT}") from e
    home = ray_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    root = _socket_root(home)
    context = None
    # Ray's processes inherit the environment at start: HOME (its token file, ~/.ray) and
    # RAY_TMPDIR point under LAKE_HOME only while they start; the token is read then.
    with _environment({"HOME": str(home), "RAY_TMPDIR": str(home)}):
        for attempt in range(START_ATTEMPTS):
            try:
                context = ray.init(
                    num_cpus=settings.ray_cpus,
                    include_dashboard=False,
                    _temp_dir=str(root),
                    log_to_driver=False,
                )
                break
            except Exception as e:  # Ray raises a bare Exception when its node misses its deadline
                ray.shutdown()
                if attempt + 1 == START_ATTEMPTS:
                    raise RayStartFailed(
                        f"a local Ray did not start after {START_ATTEMPTS} tries: {e}"
                    ) from e
    assert context is not None
    try:
        yield str(context.address_info["gcs_address"])  # type: ignore[attr-defined]
    finally:
        ray.shutdown()


def _socket_root(home: Path) -> Path:
    """Where Ray's session goes: ``home``, or a short link to it in the system temp folder.

    Ray names sockets ``<root>/session_<time>_<pid>/sockets/plasma_store`` and a Unix socket path
    has at most 107 bytes; a deep ``LAKE_HOME`` gets ``<tmp>/lake-ray-<hash>`` pointing at
    ``LAKE_HOME/ray``, so the files still live under ``LAKE_HOME``.
    """
    if len(str(home)) <= SOCKET_ROOM:
        return home
    link = Path(tempfile.gettempdir()) / f"lake-ray-{hashlib.sha256(str(home).encode()).hexdigest()[:12]}"
    try:
        link.symlink_to(home, target_is_directory=True)
    except FileExistsError:
        if not (link.is_symlink() and link.resolve() == home.resolve()):
            raise ScaleUnavailable(f"{link} exists and is not Lake's link to {home}") from None
    return link


def token_path(settings: Settings) -> Path:
    """The token file of the local Ray :func:`local_ray` starts (for drivers that connect to it:
    ``RAY_AUTH_TOKEN_PATH``)."""
    return ray_home(settings) / ".ray" / "auth_token"


@contextmanager
def connected_ray(address: str) -> Iterator[str]:
    """Connect to an existing Ray cluster for the job (the cluster needs Lake and the same pinned
    ``lake[scale]`` packages); disconnect after."""
    try:
        import ray
    except ImportError as e:
        raise ScaleUnavailable(f"--runner ray needs Ray: {INSTALL_HINT}") from e
    ray.init(address=address, log_to_driver=False)
    try:
        yield address
    finally:
        ray.shutdown()


@contextmanager
def runner(settings: Settings, kind: Runner = "native", address: str | None = None) -> Iterator[str]:
    """Run the Daft jobs of the block on ``kind``; yields a description of where they run."""
    daft = require_daft()
    if kind == "native":
        if address:
            raise ScaleUnavailable("--ray-address needs --runner ray")
        _set_runner(daft, "native", daft.set_runner_native)
        yield "native"
        return
    start = connected_ray(address) if address else local_ray(settings)
    with start as where:
        _set_runner(daft, "ray", lambda: daft.set_runner_ray(noop_if_initialized=True))
        yield f"ray ({where}{'' if address else ', local'})"


def _set_runner(daft: Any, kind: str, set_it: Any) -> None:
    """Fix Daft's runner for this process (Daft allows it once: a second job of the same kind
    reuses it, another kind is refused)."""
    from daft.runners import get_or_infer_runner_type

    try:
        set_it()
    except daft.exceptions.DaftCoreException as e:
        if get_or_infer_runner_type() != kind:
            raise ScaleUnavailable(
                f"this process already runs Daft on {get_or_infer_runner_type()}; run {kind} jobs in "
                "another process"
            ) from e


def io_config(settings: Settings) -> Any:
    """Daft's S3 settings for Lake's store (the local endpoint: plain HTTP, its keys)."""
    from daft.io import IOConfig, S3Config

    if not settings.s3_endpoint:
        return IOConfig(s3=S3Config(region_name=settings.region))
    return IOConfig(
        s3=S3Config(
            endpoint_url=settings.s3_endpoint,
            key_id=settings.access_key_id,
            access_key=settings.secret_access_key,
            region_name=settings.region,
            use_ssl=settings.s3_endpoint.startswith("https://"),
        )
    )
