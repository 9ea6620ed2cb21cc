"""The Hugging Face `evaluate` modules load from their folders offline and agree with bench."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.evaluate_modules import MODULE_NAMES, module_path

# Raw text, as a user has it: capitals, punctuation against the words, uneven blanks.
SAMPLES = ["A dog runs on the grass.", "a dog sits  on the grass.", "A man rides a horse!",
           "two cats,on a bed.", "a dog runs."]
REFERENCES = ["a dog runs on the beach.", "a man rides a brown horse.", "a cat on a bed.",
              "two dogs play in the grass.", "a woman holds an umbrella."]
# The same by hand in coco's tokenization (lower-cased, punctuation split off).
SAMPLE_TOKENS = [["a", "dog", "runs", "on", "the", "grass", "."],
                 ["a", "dog", "sits", "on", "the", "grass", "."],
                 ["a", "man", "rides", "a", "horse", "!"],
                 ["two", "cats", ",", "on", "a", "bed", "."], ["a", "dog", "runs", "."]]
REFERENCE_TOKENS = [["a", "dog", "runs", "on", "the", "beach", "."],
                    ["a", "man", "rides", "a", "brown", "horse", "."],
                    ["a", "cat", "on", "a", "bed", "."],
                    ["two", "dogs", "play", "in", "the", "grass", "."],
                    ["a", "woman", "holds", "an", "umbrella", "."]]

LOAD_ALL = """
import json, sys
import evaluate
from bench.evaluate_modules import module_path
samples, references = json.loads(sys.argv[1])
out = {
    "bleu": evaluate.load(module_path("ganbench_bleu")).compute(
        predictions=samples, reference_set=references),
    "self_bleu": evaluate.load(module_path("ganbench_self_bleu")).compute(
        predictions=samples, dataset="coco"),
    "distinct": evaluate.load(module_path("ganbench_distinct")).compute(
        predictions=samples, dataset="coco"),
}
print(json.dumps(out))
"""


def test_module_path_names_a_folder_with_its_script():
    for name in MODULE_NAMES:
        assert os.path.isfile(os.path.join(module_path(name), f"{name}.py"))
    with pytest.raises(ValueError):
        module_path("bleu")


def nltk_bleu(hypotheses, references, order):
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return float(np.mean([sentence_bleu(refs, hypothesis, weights=(1 / order,) * order,
                                        smoothing_function=SmoothingFunction().method1)
                          for hypothesis, refs in zip(hypotheses, references)]))


def test_modules_load_offline_in_a_fresh_process_and_tokenize_raw_text(tmp_path, data_dir):
    # Offline, and any attempt to reach the network would hit a dead proxy and fail.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_EVALUATE_OFFLINE": "1", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"),
           "GANBENCH_DATA": str(data_dir)}
    done = subprocess.run([sys.executable, "-c", LOAD_ALL, json.dumps([SAMPLES, REFERENCES])],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])

    others = [SAMPLE_TOKENS[:i] + SAMPLE_TOKENS[i + 1 :] for i in range(len(SAMPLE_TOKENS))]
    for n in (2, 3, 4, 5):
        assert got["bleu"][f"bleu_{n}"] == pytest.approx(
            nltk_bleu(SAMPLE_TOKENS, [REFERENCE_TOKENS] * len(SAMPLE_TOKENS), n), abs=1e-12)
        assert got["self_bleu"][f"self_bleu_{n}"] == pytest.approx(
            nltk_bleu(SAMPLE_TOKENS, others, n), abs=1e-12)
    # distinct-1 by hand: 16 distinct tokens (a dog runs on the grass . sits man rides horse !
    # two cats , bed) among 7 + 7 + 6 + 7 + 4 = 31.
    assert got["distinct"]["distinct_1"] == pytest.approx(16 / 31)


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

    by_nltk = [sentence_bleu(REFERENCE_TOKENS, hypothesis, weights=(0.5, 0.5),
                             smoothing_function=SmoothingFunction().method1)
               for hypothesis in SAMPLE_TOKENS[:2]]
    assert got == {"bleu_2": pytest.approx(float(np.mean(by_nltk)), abs=1e-12)}
