"""ganbench_self_bleu: leave-one-out Self-BLEU-n of a set of generated sentences (METRICS.md)."""

import datasets
import evaluate

_DESCRIPTION = """\
Self-BLEU-n (Zhu et al. 2018) as GANBench defines it: each generated sentence is the hypothesis
once, with all the OTHER generated sentences as references, scored with nltk's sentence_bleu
semantics (cumulative uniform weights 1/n, SmoothingFunction().method1); the score is the mean.
Higher means less diverse. Never cached across calls. Computed exactly by bench.metrics.bleu.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: generated sentences (at least 2), raw text (tokenized here with the evaluation
        tokenization).
    orders: the n of Self-BLEU-n to report (default 2, 3, 4, 5).
    dataset: optional named corpus (coco, news, ...) whose evaluation tokenization to use.
Returns:
    {"self_bleu_2": float, ..., "self_bleu_5": float}: means over the sentences, in [0, 1].
Example:
    >>> self_bleu = evaluate.load(module_path("ganbench_self_bleu"))
    >>> self_bleu.compute(predictions=["a dog runs .", "a dog sits .", "a cat ."])
"""

_CITATION = """\
@inproceedings{zhu2018texygen,
  title={Texygen: A Benchmarking Platform for Text Generation Models},
  author={Zhu, Yaoming and Lu, Sidi and Zheng, Lei and Guo, Jiaxian and Zhang, Weinan and
          Wang, Jun and Yu, Yong},
  booktitle={SIGIR}, year={2018}
}
"""


class GanbenchSelfBleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, orders=(2, 3, 4, 5), dataset=None):
        import numpy as np

        from bench.evaluate_modules import evaluation_tokenization
        from bench.metrics.bleu import self_bleu

        sentences = evaluation_tokenization(dataset).tokenize_all(predictions)
        scores = self_bleu(sentences, orders=tuple(orders))
        return {f"self_bleu_{n}": float(np.mean(scores[n])) for n in orders}
