"""ganbench_distinct: distinct-n of a set of generated sentences (unique / all n-grams)."""

import datasets
import evaluate

_DESCRIPTION = """\
distinct-n (Li et al. 2016) pooled over the whole set: the number of unique n-grams divided by
the number of n-grams, n-grams never crossing sentences; 0.0 when there is no n-gram at all.
Higher means more diverse. Computed by bench.metrics.diversity.distinct_n.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: generated sentences, raw text (tokenized here with the evaluation tokenization).
    orders: the n of distinct-n to report (default 1, 2, 3, 4).
    dataset: optional named corpus (coco, news, ...) whose evaluation tokenization to use.
Returns:
    {"distinct_1": float, ..., "distinct_4": float}, each in [0, 1].
Example:
    >>> distinct = evaluate.load(module_path("ganbench_distinct"))
    >>> distinct.compute(predictions=["a dog runs .", "a dog sits ."])
"""

_CITATION = """\
@inproceedings{li2016diversity,
  title={A Diversity-Promoting Objective Function for Neural Conversation Models},
  author={Li, Jiwei and Galley, Michel and Brockett, Chris and Gao, Jianfeng and Dolan, Bill},
  booktitle={NAACL-HLT}, year={2016}
}
"""


class GanbenchDistinct(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, orders=(1, 2, 3, 4), dataset=None):
        from bench.evaluate_modules import evaluation_tokenization
        from bench.metrics.diversity import distinct_n

        sentences = evaluation_tokenization(dataset).tokenize_all(predictions)
        return {f"distinct_{n}": distinct_n(sentences, n) for n in orders}
