"""Embedder benchmark: the static model against MiniLM, speed and quality, in the same run.

Usage::

    python bench/embedders.py [--sentences N] [--repeat K] [--home DIR] [--fresh] [--json]

* **speed**: both embedders embed the same ``N`` sentences (built from the labelled set below,
  each made unique by a number); sentences/s is the best of ``K`` timed runs after a warm-up,
  and ``speed_ratio`` is static's rate over MiniLM's.
* **quality** on a labelled set shipped in this script (12 topics, 3 pairs of paraphrases
  each, 72 sentences): ``topic_nn`` is the fraction of sentences whose nearest other sentence
  is of the same topic; ``paraphrase_r1`` / ``_r5`` the fraction whose paraphrase is the
  nearest / among the 5 nearest of the 71 others; ``spearman`` the rank correlation of
  static's 2,556 pairwise cosine scores with MiniLM's.
* **load**: seconds to load each model in this process (static first: it needs neither
  torch nor transformers; MiniLM's figure includes importing them). ``--fresh`` also
  distils a static model into a temporary folder and reports how long that took.

The static model is taken from ``<home>/models/static-minilm`` (``--home``, default the
checkout's ``.lake``), distilled there first if missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lakehouse.config import Settings
from lakehouse.vectors.embedders import Embedder, distil_static, get_embedder

REPO = Path(__file__).resolve().parent.parent

# topic -> pairs of sentences that say the same thing in other words
PARAPHRASES: dict[str, list[tuple[str, str]]] = {
    "weather": [
        (
            "Heavy rain is expected across the region tomorrow.",
            "Forecasters predict a downpour here tomorrow.",
        ),
        (
            "It will be sunny and warm all weekend.",
            "Expect clear skies and high temperatures on Saturday and Sunday.",
        ),
        ("A cold front brings snow overnight.", "Freezing air will cause snowfall during the night."),
    ],
    "cooking": [
        (
            "Whisk the eggs with sugar until pale.",
            "Beat the eggs and the sugar together until light in colour.",
        ),
        (
            "Simmer the tomato sauce for twenty minutes.",
            "Let the tomato sauce cook gently for a third of an hour.",
        ),
        (
            "Roast the chicken until the skin is golden.",
            "Cook the chicken in the oven until its skin browns.",
        ),
    ],
    "finance": [
        (
            "The central bank raised interest rates.",
            "Borrowing costs went up after the central bank's decision.",
        ),
        (
            "Stock markets fell sharply after the report.",
            "Share prices dropped steeply once the report came out.",
        ),
        ("Inflation made mortgages more expensive.", "Rising prices pushed up the cost of home loans."),
    ],
    "football": [
        ("The striker scored twice in the second half.", "After the break the forward netted two goals."),
        (
            "The goalkeeper saved a penalty in the last minute.",
            "In stoppage time the keeper stopped a spot kick.",
        ),
        (
            "The team was relegated after losing again.",
            "Another defeat sent the club down to the lower league.",
        ),
    ],
    "medicine": [
        (
            "The patient was given antibiotics for the infection.",
            "Doctors treated the infection with antibiotic drugs.",
        ),
        ("High blood pressure raises the risk of stroke.", "Hypertension makes a stroke more likely."),
        ("The vaccine protects against severe illness.", "Getting the shot prevents serious disease."),
    ],
    "computing": [
        (
            "The server crashed because it ran out of memory.",
            "The machine went down after exhausting its RAM.",
        ),
        (
            "Restart the router to fix the connection.",
            "Turning the modem off and on again restores the network.",
        ),
        (
            "The database query is slow without an index.",
            "Lookups in the table take long when no index exists.",
        ),
    ],
    "travel": [
        (
            "Our flight to Rome was delayed by three hours.",
            "The plane to Italy's capital left three hours late.",
        ),
        ("We booked a hotel room near the beach.", "We reserved accommodation close to the seaside."),
        (
            "The train station is a short walk from the museum.",
            "You can reach the railway station from the gallery on foot.",
        ),
    ],
    "gardening": [
        ("Water the tomato plants every morning.", "Give the tomatoes a drink each day at dawn."),
        ("Prune the roses in late winter.", "Cut back the rose bushes at the end of winter."),
        ("Slugs ate the lettuce leaves overnight.", "During the night snails devoured the salad greens."),
    ],
    "music": [
        ("She plays the violin in the city orchestra.", "She is a violinist with the local symphony."),
        ("The band released a new album last week.", "Last week the group put out a new record."),
        (
            "The concert was cancelled because the singer was ill.",
            "The show was called off since the vocalist was sick.",
        ),
    ],
    "pets": [
        ("The dog barks whenever the postman arrives.", "Our puppy howls each time the mail carrier comes."),
        (
            "The cat sleeps on the windowsill all afternoon.",
            "Our kitten naps by the window for the whole afternoon.",
        ),
        ("Take the dog to the vet for its vaccinations.", "The puppy needs its shots at the animal clinic."),
    ],
    "law": [
        ("The court sentenced him to five years in prison.", "The judge gave him a five-year jail term."),
        (
            "The contract was void because it was never signed.",
            "Without signatures the agreement had no legal force.",
        ),
        (
            "The witness testified against the defendant.",
            "The accused was incriminated by the witness's statement.",
        ),
    ],
    "space": [
        (
            "The rocket launched the satellite into orbit.",
            "The launcher put the satellite in orbit around Earth.",
        ),
        (
            "Astronomers discovered a planet around a distant star.",
            "Scientists found an exoplanet orbiting a faraway sun.",
        ),
        (
            "The astronauts returned safely from the space station.",
            "The crew came back unharmed from the orbital station.",
        ),
    ],
}


def labelled() -> tuple[list[str], list[str], list[int]]:
    """Sentences, their topics and, for each sentence, the index of its paraphrase."""
    texts: list[str] = []
    topics: list[str] = []
    partner: list[int] = []
    for topic, pairs in PARAPHRASES.items():
        for a, b in pairs:
            i = len(texts)
            texts += [a, b]
            topics += [topic, topic]
            partner += [i + 1, i]
    return texts, topics, partner


def speed_corpus(n: int) -> list[str]:
    """``n`` distinct sentences of the labelled set's length and vocabulary."""
    texts, _, _ = labelled()
    return [f"{texts[i % len(texts)]} Item {i}." for i in range(n)]


def quality(vectors: np.ndarray, topics: list[str], partner: list[int]) -> dict[str, float]:
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1)
    nearest = order[:, 0]
    return {
        "topic_nn": round(float(np.mean([topics[i] == topics[j] for i, j in enumerate(nearest)])), 3),
        "paraphrase_r1": round(float(np.mean(nearest == np.array(partner))), 3),
        "paraphrase_r5": round(float(np.mean([partner[i] in order[i, :5] for i in range(len(partner))])), 3),
    }


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two score lists (no ties among float cosines in practice)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def rate(embedder: Embedder, sentences: list[str], repeat: int) -> float:
    """Sentences per second, best of ``repeat`` runs after a warm-up."""
    embedder.embed(sentences[:16])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        embedder.embed(sentences)
        best = min(best, time.perf_counter() - start)
    return len(sentences) / best


def run(sentences: int, repeat: int, home: Path, fresh: bool) -> dict[str, Any]:
    settings = Settings(home=home)
    report: dict[str, Any] = {"sentences": sentences, "repeat": repeat}
    models: dict[str, Embedder] = {}
    for name in ("static", "minilm"):
        start = time.perf_counter()
        models[name] = get_embedder(name, settings)
        report[f"{name}_load_s"] = round(time.perf_counter() - start, 2)
    if fresh:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            distil_static(Path(tmp) / "static-minilm")
            report["distil_s"] = round(time.perf_counter() - start, 1)

    corpus = speed_corpus(sentences)
    for name, model in models.items():
        report[f"{name}_sentences_per_s"] = round(rate(model, corpus, repeat), 1)
    report["speed_ratio"] = round(report["static_sentences_per_s"] / report["minilm_sentences_per_s"], 1)

    texts, topics, partner = labelled()
    vectors = {name: model.embed(texts) for name, model in models.items()}
    for name in models:
        for metric, value in quality(vectors[name], topics, partner).items():
            report[f"{name}_{metric}"] = value
    upper = np.triu_indices(len(texts), k=1)
    pairs = {name: (v @ v.T)[upper] for name, v in vectors.items()}
    report["pairs"] = len(pairs["minilm"])
    report["spearman"] = round(spearman(pairs["static"], pairs["minilm"]), 3)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=2000, help="sentences timed per embedder")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per embedder (best kept)")
    parser.add_argument("--home", type=Path, default=REPO / ".lake", help="LAKE_HOME holding models/")
    parser.add_argument("--fresh", action="store_true", help="also time a distillation from scratch")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    report = run(args.sentences, args.repeat, args.home, args.fresh)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.sentences} sentences, best of {args.repeat}")
    for name in ("minilm", "static"):
        print(
            f"  {name:6s}  load {report[f'{name}_load_s']:6.2f} s  "
            f"{report[f'{name}_sentences_per_s']:>10,.0f} sentences/s  "
            f"topic nn {report[f'{name}_topic_nn']:.3f}  paraphrase r@1 {report[f'{name}_paraphrase_r1']:.3f}"
            f"  r@5 {report[f'{name}_paraphrase_r5']:.3f}"
        )
    print(f"  static / minilm speed: x{report['speed_ratio']}")
    print(f"  spearman of static's {report['pairs']} pair scores vs minilm's: {report['spearman']:.3f}")
    if "distil_s" in report:
        print(f"  distilling the static model from scratch: {report['distil_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
