"""ganbench_bleu: BLEU-n of generated sentences against a whole reference set (METRICS.md)."""

import datasets
import evaluate

_DESCRIPTION = """\
BLEU-n as text-GAN papers report it (Texygen, Zhu et al. 2018) and as GANBench defines it: every
hypothesis is scored with nltk's sentence_bleu semantics (cumulative uniform weights 1/n,
SmoothingFunction().method1, brevity penalty against the closest reference length) against ALL
sentences of the reference set (normally the test split), and the score is the mean over
hypotheses. Computed exactly, and fast, by bench.metrics.bleu.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: generated sentences, raw text (tokenized here with the evaluation tokenization).
    reference_set: the reference sentences (the whole test split), raw text; any number,
        unrelated to the number of predictions (so it is a keyword, not `references`).
    orders: the n of BLEU-n to report (default 2, 3, 4, 5).
    dataset: optional named corpus (coco, news, ...) whose evaluation tokenization to use.
Returns:
    {"bleu_2": float, ..., "bleu_5": float}: means over the predictions, in [0, 1].
Example:
    >>> bleu = evaluate.load(module_path("ganbench_bleu"))
    >>> bleu.compute(predictions=["a dog runs ."], reference_set=["a dog runs .", "a cat ."])
"""

_CITATION = """\
@inproceedings{zhu2018texygen,
  title={Texygen: A Benchmarking Platform for Text Generation Models},
  author={Zhu, Yaoming and Lu, Sidi and Zheng, Lei and Guo, Jiaxian and Zhang, Weinan and
          Wang, Jun and Yu, Yong},
  booktitle={SIGIR}, year={2018}
}
"""


class GanbenchBleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, reference_set=None, orders=(2, 3, 4, 5), dataset=None):
        if reference_set is None:
            raise ValueError("ganbench_bleu needs reference_set=[...] (e.g. the test split)")
        import numpy as np

        from bench.evaluate_modules import evaluation_tokenization
        from bench.metrics.bleu import bleu

        tokenization = evaluation_tokenization(dataset, reference_set)
        hypotheses = tokenization.tokenize_all(predictions)
        references = tokenization.tokenize_all(reference_set)
        scores = bleu(hypotheses, references, orders=tuple(orders))
        return {f"bleu_{n}": float(np.mean(scores[n])) for n in orders}
