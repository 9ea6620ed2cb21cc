"""The Hugging Face `evaluate` modules load from their folders offline and agree with bench."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.evaluate_modules import MODULE_NAMES, module_path

SAMPLES = ["a dog runs on the grass .", "a dog sits on the grass .", "a man rides a horse .",
           "two cats on a bed .", "a dog runs ."]
REFERENCES = ["a dog runs on the beach .", "a man rides a brown horse .", "a cat on a bed .",
              "two dogs play in the grass .", "a woman holds an umbrella ."]

LOAD_ALL = """
import json, sys
import evaluate
from bench.evaluate_modules import module_path
samples, references = json.loads(sys.argv[1])
out = {
    "bleu": evaluate.load(module_path("ganbench_bleu")).compute(
        predictions=samples, reference_set=references),
    "self_bleu": evaluate.load(module_path("ganbench_self_bleu")).compute(predictions=samples),
    "distinct": evaluate.load(module_path("ganbench_distinct")).compute(predictions=samples),
}
print(json.dumps(out))
"""


def split(sentences):
    return [s.split() for s in sentences]


def test_module_path_names_a_folder_with_its_script():
    for name in MODULE_NAMES:
        assert os.path.isfile(os.path.join(module_path(name), f"{name}.py"))
    with pytest.raises(ValueError):
        module_path("bleu")


def test_modules_load_offline_in_a_fresh_process_and_agree_with_bench(tmp_path):
    from bench.metrics.bleu import bleu, self_bleu
    from bench.metrics.diversity import distinct_n

    # Offline, and any attempt to reach the network would hit a dead proxy and fail.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_EVALUATE_OFFLINE": "1", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", LOAD_ALL, json.dumps([SAMPLES, REFERENCES])],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])

    expected_bleu = bleu(split(SAMPLES), split(REFERENCES), orders=(2, 3, 4, 5))
    expected_self = self_bleu(split(SAMPLES), orders=(2, 3, 4, 5))
    for n in (2, 3, 4, 5):
        assert got["bleu"][f"bleu_{n}"] == pytest.approx(float(np.mean(expected_bleu[n])),
                                                         abs=1e-12)
        assert got["self_bleu"][f"self_bleu_{n}"] == pytest.approx(
            float(np.mean(expected_self[n])), abs=1e-12)
    for n in (1, 2, 3, 4):
        assert got["distinct"][f"distinct_{n}"] == distinct_n(split(SAMPLES), n)


def test_modules_take_orders_and_insist_on_a_reference_set():
    import evaluate

    distinct = evaluate.load(module_path("ganbench_distinct"))
    assert distinct.compute(predictions=["a b a b"], orders=[1, 2]) == {
        "distinct_1": 0.5, "distinct_2": 2 / 3}
    bleu = evaluate.load(module_path("ganbench_bleu"))
    with pytest.raises(ValueError, match="reference_set"):
        bleu.compute(predictions=SAMPLES)
    got = bleu.compute(predictions=SAMPLES[:2], reference_set=REFERENCES, orders=[2])
    # By METRICS.md's definition: nltk's sentence BLEU against all references, mean.
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    by_nltk = [sentence_bleu(split(REFERENCES), hypothesis, weights=(0.5, 0.5),
                             smoothing_function=SmoothingFunction().method1)
               for hypothesis in split(SAMPLES[:2])]
    assert got == {"bleu_2": pytest.approx(float(np.mean(by_nltk)), abs=1e-12)}
