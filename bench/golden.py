"""Golden metric checks: every metric of METRICS.md recomputed from committed fixtures, so that a
bug in the metric code fails wherever it runs, on any CPU (issue 24; METRICS.md, Regression
checks).

    python -m bench.golden                  # print this platform's fingerprint and values (JSON)
    python -m bench.golden --make-fixtures  # re-make the fixtures (a deliberate change only)

The fixtures, in results/regression/golden/, are model outputs, never corpus data: two tiny
word LSTMs (coco, oracle) and a tiny GPT-2 with its BPE tokenizer (coco), each trained for a
few dozen steps, and sentences sampled from the LSTMs. The corpora they are scored against are
the checksummed ones of ../shared/data. Values that are pure counting (BLEU, Self-BLEU,
distinct-n, copy rate, sacrebleu, ROUGE-L) must match exactly; the rest to a tolerance measured
across kernel settings (GOLDEN_TOLERANCES).

Also here: the numerics fingerprint, the key of the end-to-end checks' exact baselines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

FIXTURE_DIR = Path("results/regression/golden")
SAMPLES = {"coco": "samples_coco.txt", "oracle": "samples_oracle.txt"}
# name -> (variant, dataset, config overrides, training steps, how its weights are loaded back)
GENERATORS: dict[str, tuple[str, str, dict[str, Any], int, str]] = {
    "lstm_coco": ("mle_lstm", "coco", {"embedding_dim": 16, "hidden_dim": 32}, 60,
                  "init_generator"),
    "lstm_oracle": ("mle_lstm", "oracle", {"embedding_dim": 16, "hidden_dim": 32}, 60,
                    "init_generator"),
    "gpt2_coco": ("gpt2_mle", "coco", {"n_layer": 2, "n_embd": 32, "n_head": 2,
                                       "bpe_vocab_size": 500, "n_positions": 64}, 40,
                  "model_name_or_path"),
}
NUM_SAMPLES = {"coco": 300, "oracle": 200}
SAMPLE_SEED = 12345
NLL_TEST_SENTENCES = 1500
DISC_ACC_SEED = 0

# Absolute tolerances by the metric's last name part (the first matching prefix wins), with where
# each came from: `python -m bench.golden` on two CPUs (an AVX2-only one and an AVX-512 Intel
# Xeon) under ATEN_CPU_CAPABILITY=avx2 (the pinned setting), default (no vector kernels) and
# unpinned (MKL and ATen at the CPU's best); results/regression/golden/README.md gives the
# measured spreads.
GOLDEN_TOLERANCES: dict[str, float] = {
    # Counting in integers, then float64 arithmetic in a fixed order: exact on every setting.
    "bleu_": 0.0, "self_bleu_": 0.0, "distinct_": 0.0, "copy_rate": 0.0, "sacrebleu": 0.0,
    "rouge_l": 0.0, "oov_rate": 0.0,
    # float32 forward passes summed in float64: the largest spread measured was 3.1e-8 nats.
    "nll": 1e-6,
    # A trained classifier: the largest spread measured was 0.0033 (one test decision in 300;
    # the issue saw 0.013 across CPUs on the smoke runs); a planted bug (testing on the
    # training sentences) moves it from 0.837 to 1.0.
    "disc_acc": 0.05,
    # Counts of the budget check.
    "steps": 0.0, "charged": 0.0,
}


# The golden values in groups that are computed apart (--groups: a quick check of one part).
GROUPS = ("text", "disc_acc", "lstm", "gpt2", "oracle", "budget")


def group_of(name: str) -> str:
    """coco/bleu_2 -> text, coco/disc_acc -> disc_acc, coco/lstm/nll_test -> lstm, coco/gpt2/..
    -> gpt2, oracle/... -> oracle, budget/... -> budget."""
    parts = name.split("/")
    if parts[0] in ("oracle", "budget"):
        return parts[0]
    if parts[1] in ("lstm", "gpt2", "disc_acc"):
        return parts[1]
    return "text"


def tolerance_for(name: str) -> float:
    last = name.rsplit("/", 1)[-1]
    for prefix, tolerance in GOLDEN_TOLERANCES.items():
        if last.startswith(prefix):
            return tolerance
    raise KeyError(f"no golden tolerance for {name!r}")


def numerics_fingerprint() -> str:
    """A hash of the float32 bytes of a small fixed computation that uses the kernels the
    smoke suite's numbers come from (GEMM, LSTM, 1-d convolution, attention, layer norm,
    GELU, log-softmax, Adam), plus the versions of the libraries that compute them. Two
    platforms with one fingerprint compute those kernels bit for bit alike."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        embedding, lstm = nn.Embedding(97, 24), nn.LSTM(24, 40, batch_first=True)
        conv, norm, head = nn.Conv1d(24, 16, 3), nn.LayerNorm(40), nn.Linear(40, 97)
        modules = nn.ModuleList([embedding, lstm, conv, norm, head])
        optimizer = torch.optim.Adam(modules.parameters(), lr=1e-2)
        tokens = torch.randint(0, 97, (8, 13))
        outputs = []
        for _ in range(3):
            embedded = embedding(tokens)
            hidden, _ = lstm(embedded)
            query = hidden.view(8, 13, 4, 10).transpose(1, 2)
            attended = F.scaled_dot_product_attention(query, query, query, is_causal=True)
            mixed = norm(F.gelu(attended.transpose(1, 2).reshape(8, 13, 40) + hidden))
            features = conv(embedded.transpose(1, 2)).amax(dim=2)
            log_probs = F.log_softmax(head(mixed), dim=-1)
            loss = -log_probs[:, :-1].gather(2, tokens[:, 1:, None]).mean() \
                + features.square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            outputs += [log_probs.detach(), features.detach(), torch.tanh(mixed).detach(),
                        torch.sigmoid(hidden).detach().exp()]
    digest = hashlib.sha256()
    for tensor in outputs:
        digest.update(tensor.contiguous().numpy().astype(np.float32).tobytes())
    for package in ("torch", "numpy", "transformers", "tokenizers"):
        try:
            digest.update(f"{package}={metadata.version(package)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=none;".encode())
    return digest.hexdigest()[:16]


def _build(name: str, corpus, fixtures: Path | None):
    """A generator of GENERATORS: fresh (fixtures None) or loaded from the fixture folder."""
    import torch

    from bench.config import build_config
    from bench.registry import get_variant

    variant_name, _, overrides, _, load_key = GENERATORS[name]
    variant_class = get_variant(variant_name)
    overrides = dict(overrides)
    if fixtures is not None:
        path = fixtures / name
        overrides[load_key] = str(path / "generator.safetensors" if load_key == "init_generator"
                                  else path / "generator")
    config = build_config(variant_class.Config, overrides,
                          base=variant_class.corpus_defaults(corpus))
    return variant_class(config, corpus, torch.device("cpu"), 0)


def make_fixtures(directory: Path, data_dir: Path | None = None) -> None:
    """Train GENERATORS for their steps and write them and the LSTMs' samples to directory."""
    import shutil

    import torch

    from bench.corpora import load_corpus
    from bench.text import one_line

    directory.mkdir(parents=True, exist_ok=True)
    for name, (_, dataset, _, steps, _) in GENERATORS.items():
        corpus = load_corpus(dataset, data_dir)
        torch.manual_seed(0)
        variant = _build(name, corpus, None)
        for step in range(steps):
            variant.train_step(step / steps)
        shutil.rmtree(directory / name, ignore_errors=True)
        variant.save_artifacts(directory / name)
        shutil.rmtree(directory / name / "tokenizer", ignore_errors=True)  # a copy of generator/
        if name.startswith("lstm_"):
            samples = variant.sample(NUM_SAMPLES[dataset], 1.0, SAMPLE_SEED)
            (directory / SAMPLES[dataset]).write_text(
                "".join(one_line(s) + "\n" for s in samples), encoding="utf-8")


def _nll_values(prefix: str, variant, corpus) -> dict[str, float]:
    """nll_metrics on the first NLL_TEST_SENTENCES test sentences (a fixed part: the metric's
    code is what is checked, and the whole split would take most of the check's time)."""
    import dataclasses

    from bench.evaluation import nll_metrics

    scored = dataclasses.replace(corpus, test=corpus.test[:NLL_TEST_SENTENCES])
    metrics, _ = nll_metrics(variant, scored, ())
    return {f"{prefix}/{k}": float(v) for k, v in sorted(metrics.items())}


def _budget_values(data_dir: Path | None) -> dict[str, float]:
    """A run whose construction alone costs more than its seconds budget must take no step, and
    its charged seconds must hold the construction's (METRICS.md, Budget)."""
    from bench.runner import RunOptions, RunSpec, run_one

    evaluation = {"num_samples": 2, "temperatures": [], "disc_acc": False,
                  "reference_metrics": False, "valid_points": 0}
    spec = RunSpec("mle_lstm", "oracle", "0.0001s", seed=0,
                   overrides={"embedding_dim": 8, "hidden_dim": 8}, evaluation=evaluation)
    with tempfile.TemporaryDirectory() as scratch:
        record = run_one(spec, RunOptions(out_dir=Path(scratch), data_dir=data_dir, quiet=True,
                                          resume=False))
    budget = record["budget"]
    charged = budget["seconds"] >= budget["construction_seconds"] > 0
    return {"budget/steps_when_construction_exceeds_budget": float(budget["steps"]),
            "budget/charged_construction": float(charged)}


def golden_values(fixtures: Path = FIXTURE_DIR, data_dir: Path | None = None,
                  groups: tuple[str, ...] = GROUPS) -> dict[str, float]:
    """The golden values of ``groups`` (default: every one), computed on this platform from the
    fixtures."""
    import torch
    from transformers.utils import logging as hf_logging

    from bench.corpora import load_corpus
    from bench.errors import GanbenchError
    from bench.evaluation import BLEU_ORDERS, text_metrics
    from bench.metrics.diversity import copy_rate, distinct_n

    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()  # "Loading weights" bars of the GPT-2 fixture
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise GanbenchError(f"unknown golden groups {sorted(unknown)}: {', '.join(GROUPS)}")
    values: dict[str, float] = {}
    coco = load_corpus("coco", data_dir)
    samples = (fixtures / SAMPLES["coco"]).read_text(encoding="utf-8").splitlines()
    tokenized = coco.tokenization.tokenize_all(samples)
    if "text" in groups:
        for name, value in text_metrics(tokenized, coco).items():
            values[f"coco/{name}"] = value
        for n in (1, 2, 3, 4):
            values[f"coco/distinct_{n}"] = distinct_n(tokenized, n)
        values["coco/copy_rate"] = copy_rate(tokenized, coco.train)

        from bench.metrics.reference import rouge_l, sacrebleu_score
        from bench.text import Tokenization

        text = [Tokenization.detokenize(s) for s in tokenized]
        values["coco/sacrebleu"] = float(sacrebleu_score(text, coco.test_text())["score"])
        values["coco/rouge_l"] = float(rouge_l(text, coco.test_text()))
    if "disc_acc" in groups:
        from bench.metrics.disc_acc import DiscAccSettings, disc_acc

        values["coco/disc_acc"] = float(disc_acc(
            coco.test, tokenized, seed=DISC_ACC_SEED,
            settings=DiscAccSettings(replicates=1))["disc_acc"])
    if "lstm" in groups:
        values.update(_nll_values("coco/lstm", _build("lstm_coco", coco, fixtures), coco))
    if "gpt2" in groups:
        values.update(_nll_values("coco/gpt2", _build("gpt2_coco", coco, fixtures), coco))
    if "oracle" in groups:
        oracle = load_corpus("oracle", data_dir)
        ids = [[int(t) for t in line.split()] for line in
               (fixtures / SAMPLES["oracle"]).read_text(encoding="utf-8").splitlines()]
        values["oracle/nll_oracle"] = float(oracle.oracle.nll(ids))
        values.update(_nll_values("oracle/lstm", _build("lstm_oracle", oracle, fixtures),
                                  oracle))
    if "budget" in groups:
        values.update(_budget_values(data_dir))
    assert len(BLEU_ORDERS) == 4 and all(math.isfinite(v) for v in values.values())
    assert all(group_of(name) in groups for name in values)
    return values


def compare_golden(current: dict[str, float], stored: dict[str, float]) -> list[str]:
    """One line per golden value that is missing, not finite or beyond its tolerance."""
    problems = []
    for name, expected in sorted(stored.items()):
        now, tolerance = current.get(name), tolerance_for(name)
        if now is None or not math.isfinite(now):
            problems.append(f"golden {name}: missing (expected {expected!r})")
        elif abs(now - expected) > tolerance:
            problems.append(f"golden {name} = {now!r}, expected {expected!r} "
                            f"(tolerance {tolerance:g})")
    for name in sorted(set(current) - set(stored)):
        problems.append(f"golden {name}: not in the stored values (run --update)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.golden")
    parser.add_argument("--fixtures", type=Path, default=FIXTURE_DIR)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--make-fixtures", action="store_true",
                        help="train the fixture generators and write them and their samples")
    parser.add_argument("--json", type=Path, default=None, help="also write the output here")
    parser.add_argument("--quiet", action="store_true", help="print nothing (with --json)")
    parser.add_argument("--fingerprint-only", action="store_true",
                        help="only the numerics fingerprint (no fixtures or data needed)")
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), metavar="GROUP",
                        help=f"compute only these groups of values ({', '.join(GROUPS)})")
    args = parser.parse_args(argv)
    from bench.errors import GanbenchError

    try:
        if args.make_fixtures:
            make_fixtures(args.fixtures, args.data_dir)
        out: dict[str, Any] = {"fingerprint": numerics_fingerprint()}
        if not args.fingerprint_only:
            out["values"] = golden_values(args.fixtures, args.data_dir, tuple(args.groups))
    except GanbenchError as err:
        print(f"golden: error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(out, indent=1, sort_keys=True)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    if not args.quiet:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
