"""Corpora: the named benchmark sets, the synthetic oracle, and any user file, as one type.

A named corpus is read from a data directory laid out like ../shared/data (``<name>/train.txt``,
``<name>/test.txt``) and checked against the published sha256; one that is missing there is
downloaded from its public origin, checked, and only then written (atomically).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import GanbenchError
from bench.text import Tokenization, Vocabulary

if TYPE_CHECKING:  # bench.oracle imports torch; scoring text needs neither
    from bench.oracle import Oracle

DATA_ENV = "GANBENCH_DATA"
MIRROR_ENV = "GANBENCH_CORPUS_MIRROR"  # replaces ORIGIN_BASE, e.g. file:///srv/mirror/
CACHE_ENV = "GANBENCH_CACHE"
ORIGIN_BASE = "https://raw.githubusercontent.com/"
# One sentence per line: the longest line of the shipped corpora has under 1,000 characters,
# and a line of millions would become one training sequence of millions of tokens.
MAX_LINE_CHARS = 10_000
# A single user file is split 90/10, with at least this many test sentences (Self-BLEU
# compares each sample with the others, so evaluation needs two).
MIN_SPLIT_TEST = 2
# The validation split (METRICS.md, Validation and selection): the corpus's own where it ships
# one (a user folder's valid.txt), else this share of the training split, drawn with a fixed
# seed and never trained on; the oracles sample their own.
VALID_SHARE = 0.05
VALID_MAX = 2000
VALID_SEED = 5_000_011


@dataclass(frozen=True)
class SplitSource:
    """Where one split of a named corpus comes from: a file at the origin, maybe a line range."""

    origin_path: str
    sha256: str
    lines: slice | None = None  # chinese_poems: train and test are two parts of one file


@dataclass(frozen=True)
class NamedCorpus:
    name: str
    train: SplitSource
    test: SplitSource
    per_character: bool = False


# Origins and checksums from ../shared/data/README.md (Texygen, MIT; GansFallingShort).
NAMED_CORPORA = {
    "coco": NamedCorpus(
        "coco",
        SplitSource("geek-ai/Texygen/master/data/image_coco.txt",
                    "2c0fd1f0f43aac6a9dc3926a535516ccf395de535e15ac1fd17cd569420736f5"),
        SplitSource("geek-ai/Texygen/master/data/testdata/test_coco.txt",
                    "72e25c9fb4d2cd43182ac602c92f6ffc377762147f9709572943b0b09174bcae"),
    ),
    "news": NamedCorpus(
        "news",
        SplitSource("pclucas14/GansFallingShort/master/real_data_experiments/data/news/valid.txt",
                    "e66a6fdd1f6cb15cb8f851051e5c49062270e0de1e69213289ce50b88a1d7281"),
        SplitSource("geek-ai/Texygen/master/data/testdata/test_emnlp.txt",
                    "03c646d08f766f4140443db4419b1f0ee292bc0db514208873e9f2e166b95bd2"),
    ),
    "chinese_poems": NamedCorpus(
        "chinese_poems",
        SplitSource("geek-ai/Texygen/master/data/shi.txt",
                    "041b45189108b10b9cb5f56bf23c66e1af99c91fd0a1d4d217d92ef1fd36285a",
                    slice(0, 14_394)),
        SplitSource("geek-ai/Texygen/master/data/shi.txt",
                    "3625f79697c23338eea8c83e1c5679953e98f3ab68a9a15c91265e7118395947",
                    slice(-2_000, None)),
        per_character=True,
    ),
}
ORACLE_NAME = "oracle"
SEQGAN_ORACLE_NAME = "seqgan_oracle"
ORACLE_NAMES = (ORACLE_NAME, SEQGAN_ORACLE_NAME)

# SeqGAN's oracle (its target_params) as published by GansFallingShort; one float32 array per
# file in .npy format (despite the suffix). sha256 and shapes from ../shared/data/README.md.
SEQGAN_ORACLE_ORIGIN = "pclucas14/GansFallingShort/master/synthetic_data_experiments/oracle_params/"
SEQGAN_ORACLE_FILES = {
    "bc": ((32,), "71102ad0da50dd36eeabb2afa5949138d35ce6d3ab31092dbe5876cc658f5381"),
    "bf": ((32,), "9b8af49056f2271303c8d6e86fc838ce58535c44e2f58cf093e55564afc83be4"),
    "bi": ((32,), "771dc14a87413f142304a44ba32584aac36c31b6ea77d83f0ad4b824895ec4ba"),
    "bo": ((5000,), "dd4e5cfa70a4199fe4ba7afdf0de665837f4cfcb912c616f820debd2fbbab790"),
    "bog": ((32,), "59e8bfbe03fc47722c92d17725738b1cf31796f400550031985d2cfc406f38db"),
    "embedding": ((5000, 32),
                  "e41f8af7c573f8a1879b18396425d2d19efac559234a9c1109083d921edb3925"),
    "uc": ((32, 32), "77abdbce8bb1f17fb4907e59e8a17b360562885e5bc017bd6e78b6744f42b012"),
    "uf": ((32, 32), "22bc3d7157ee813da900ba40badd112063aaf48f55789f2f8cb972651dbc00df"),
    "ui": ((32, 32), "0557754cb2d0402fd755cea8933e83707edb30092f0a38ebc5544d9e7e3caca8"),
    "uog": ((32, 32), "0accb868a6367a2b78bcc72963a68e38b898beec77fcb5db2e4f9c95ac53539d"),
    "wc": ((32, 32), "779e970a494c4f8a8f1e0c6b39d6d5319dbc274c0806852a03b69c0ab544752e"),
    "wf": ((32, 32), "07a55ac9d573b5810724bc8e6e07446f1296245d5ff98702c144e2178beeda4f"),
    "wi": ((32, 32), "ac4b27367b0b807af02bff5ca773d88aff8e62e4aa21e02b1a7f1febf0d69a2b"),
    "wo": ((32, 5000), "a5f8fae3250fcd9cc7cd688c5605af56eb2c5d9efe745ccff7ce56f6d9a974bd"),
    "wog": ((32, 32), "7abf4a8b206e35b6e712706db110b5d7a04ee144f8d3ba64ad8c09549d2d94e2"),
}


def corpus_names() -> list[str]:
    return [*ORACLE_NAMES, *NAMED_CORPORA]


@dataclass
class Corpus:
    """Train and test splits as evaluation tokens, with the vocabulary of the training split."""

    name: str
    train: list[list[str]]
    test: list[list[str]]
    tokenization: Tokenization
    sha256: dict[str, str] = field(default_factory=dict)
    oracle: Oracle | None = None
    # Held out of training for validation NLL and checkpoint selection; may be empty (a corpus
    # too small to spare one), then a run keeps its last generator.
    valid: list[list[str]] = field(default_factory=list)

    def __post_init__(self):
        self.vocab = Vocabulary.from_sentences(self.train)
        self.max_length = max(len(s) for s in self.train)

    @property
    def is_oracle(self) -> bool:
        return self.oracle is not None

    def train_text(self) -> list[str]:
        return [Tokenization.detokenize(s) for s in self.train]

    def test_text(self) -> list[str]:
        return [Tokenization.detokenize(s) for s in self.test]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "train_sentences": len(self.train),
            "test_sentences": len(self.test),
            "valid_sentences": len(self.valid),
            "valid_sha256": sentences_sha256(self.valid),
            "vocab_size": len(self.vocab),
            "max_length": self.max_length,
            "tokenization": {
                "lowercase": self.tokenization.lowercase,
                "per_character": self.tokenization.per_character,
            },
        }

    def subsample_train(self, k: int, seed: int) -> Corpus:
        """A low-resource copy: k training sentences drawn with a seed, the test and
        validation splits kept (the validation split was taken out of training before)."""
        if not 0 < k <= len(self.train):
            raise GanbenchError(f"cannot subsample {k} of {len(self.train)} training sentences")
        chosen = sorted(random.Random(seed).sample(range(len(self.train)), k))
        return Corpus(f"{self.name}@{k}", [self.train[i] for i in chosen], self.test,
                      self.tokenization, dict(self.sha256), self.oracle, self.valid)


def sentences_sha256(sentences: list[list[str]]) -> str:
    """sha256 of sentences as lines of blank-joined tokens: names a split's exact content."""
    return sha256_bytes("".join(" ".join(s) + "\n" for s in sentences).encode("utf-8"))


def split_validation(train: list, seed: int = VALID_SEED) -> tuple[list, list]:
    """(training rest, validation): VALID_SHARE of the sentences, at most VALID_MAX, drawn with a
    fixed seed; both keep the file's order. A split of under 20 sentences spares none."""
    n_valid = min(VALID_MAX, int(VALID_SHARE * len(train)))
    if n_valid < 1:
        return list(train), []
    chosen = set(random.Random(seed).sample(range(len(train)), n_valid))
    return ([s for i, s in enumerate(train) if i not in chosen],
            [s for i, s in enumerate(train) if i in chosen])


def default_data_dir() -> Path:
    """--data-dir, else $GANBENCH_DATA, else ../shared/data beside the project, else the cache."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    beside = Path.cwd().parent / "shared" / "data"
    if beside.is_dir():
        return beside
    return cache_dir() / "data"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ganbench")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_lines(path: Path) -> list[str]:
    """Non-blank lines of a UTF-8 text file, or one clear error."""
    if path.exists() and not path.is_dir() and not path.is_file():
        # /dev/zero, a FIFO, a socket: reading would never end or block.
        raise GanbenchError(f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GanbenchError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GanbenchError(f"{path}: is a directory, expected a text file") from None
    except OSError as err:
        raise GanbenchError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GanbenchError(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if len(line) > MAX_LINE_CHARS:
            raise GanbenchError(f"{path}: line {number} has {len(line):,} characters, above the "
                                f"limit of {MAX_LINE_CHARS:,} (one sentence per line)")
        if line:
            lines.append(line)
    if not lines:
        raise GanbenchError(f"{path}: has no non-blank lines")
    return lines


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except Exception as err:  # network errors come in many classes; all mean the same here
        raise GanbenchError(f"cannot download {url}: {err}") from None


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    from bench.records import umask_mode

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_named(spec: NamedCorpus, data_dir: Path) -> None:
    """Fetch a named corpus from its origin (or $GANBENCH_CORPUS_MIRROR), check, then write."""
    base = os.environ.get(MIRROR_ENV) or ORIGIN_BASE
    if not base.endswith("/"):
        base += "/"
    fetched: dict[str, bytes] = {}
    verified: dict[str, bytes] = {}
    for split, source in (("train", spec.train), ("test", spec.test)):
        url = base + source.origin_path
        if url not in fetched:
            fetched[url] = _fetch(url)
        data = fetched[url]
        if source.lines is not None:
            data = "".join(data.decode("utf-8").splitlines(keepends=True)[source.lines]).encode()
        got = sha256_bytes(data)
        if got != source.sha256:
            raise GanbenchError(
                f"{spec.name}/{split}.txt downloaded from {url} has sha256 {got}, "
                f"expected {source.sha256}; nothing written"
            )
        verified[split] = data
    for split, data in verified.items():
        _atomic_write_bytes(data_dir / spec.name / f"{split}.txt", data)


def load_named(name: str, data_dir: Path, download: bool = True) -> Corpus:
    spec = NAMED_CORPORA[name]
    if data_dir.exists() and not data_dir.is_dir():
        raise GanbenchError(f"--data-dir {data_dir}: is a file, not a folder")
    folder = data_dir / name
    paths = {"train": folder / "train.txt", "test": folder / "test.txt"}
    if not all(p.exists() for p in paths.values()):
        if not download:
            raise GanbenchError(f"corpus {name!r} is not in {data_dir} (and download is off)")
        download_named(spec, data_dir)
    splits, checksums = {}, {}
    for split, source in (("train", spec.train), ("test", spec.test)):
        path = paths[split]
        if not path.is_file():
            raise GanbenchError(f"{path}: not a regular file")
        got = sha256_bytes(path.read_bytes())
        if got != source.sha256:
            raise GanbenchError(
                f"{path}: sha256 {got} does not match the published {source.sha256}; "
                f"this is not the benchmark's {name} corpus"
            )
        splits[split] = read_lines(path)
        checksums[f"{split}.txt"] = got
    train, valid = split_validation(splits["train"])
    tokenization = Tokenization.infer(train, per_character=spec.per_character)
    return Corpus(name, tokenization.tokenize_all(train), tokenization.tokenize_all(splits["test"]),
                  tokenization, checksums, valid=tokenization.tokenize_all(valid))


def oracle_corpus(oracle: Oracle, checksums: dict[str, str], cache: Path | None = None
                  ) -> Corpus:
    """A synthetic oracle's fixed splits as a corpus of token-id strings."""
    folder = cache if cache is not None else cache_dir()
    train, test = oracle.splits(cache_dir=folder)
    valid = oracle.validation_split(cache_dir=folder)

    def as_tokens(ids):
        return [[str(t) for t in row] for row in ids.tolist()]

    return Corpus(oracle.name, as_tokens(train), as_tokens(test), Tokenization(),
                  {**checksums, "oracle_weights": oracle.checksum()}, oracle,
                  valid=as_tokens(valid))


def load_oracle(cache: Path | None = None) -> Corpus:
    from bench.oracle import Oracle

    return oracle_corpus(Oracle(), {}, cache)


def _seqgan_oracle_array(name: str, data: bytes, origin: str):
    """One verified weight array; np.load without pickle, so a file can hold only numbers."""
    import numpy as np

    shape, expected = SEQGAN_ORACLE_FILES[name]
    got = sha256_bytes(data)
    if got != expected:
        raise GanbenchError(f"{origin}: sha256 {got} does not match the published {expected}; "
                            "this is not SeqGAN's oracle")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        raise GanbenchError(f"{origin}: not a NumPy array file ({err})") from None
    if array.shape != shape or array.dtype != np.float32:
        raise GanbenchError(f"{origin}: shape {array.shape} {array.dtype}, expected {shape} "
                            "float32")
    return array


def download_seqgan_oracle(folder: Path) -> None:
    """Fetch every weight file from its origin (or the mirror), check all, then write all."""
    base = os.environ.get(MIRROR_ENV) or ORIGIN_BASE
    if not base.endswith("/"):
        base += "/"
    verified = {}
    for name in SEQGAN_ORACLE_FILES:
        url = f"{base}{SEQGAN_ORACLE_ORIGIN}{name}.npz"
        data = _fetch(url)
        _seqgan_oracle_array(name, data, url)
        verified[name] = data
    for name, data in verified.items():
        _atomic_write_bytes(folder / f"{name}.npz", data)


def load_seqgan_oracle(data_dir: Path, download: bool = True,
                       cache: Path | None = None) -> Corpus:
    import torch

    folder = data_dir / SEQGAN_ORACLE_NAME
    if not all((folder / f"{name}.npz").exists() for name in SEQGAN_ORACLE_FILES):
        if not download:
            raise GanbenchError(f"corpus {SEQGAN_ORACLE_NAME!r} is not in {data_dir} "
                                "(and download is off)")
        download_seqgan_oracle(folder)
    params, checksums = {}, {}
    for name in SEQGAN_ORACLE_FILES:
        path = folder / f"{name}.npz"
        data = path.read_bytes()
        params[name] = torch.from_numpy(_seqgan_oracle_array(name, data, str(path)).copy())
        checksums[path.name] = SEQGAN_ORACLE_FILES[name][1]
    from bench.oracle import seqgan_oracle

    return oracle_corpus(seqgan_oracle(params), checksums, cache)


def load_user_path(path: Path, per_character: bool = False) -> Corpus:
    """A folder with train.txt, test.txt and optionally valid.txt, or one file split 90/10 with a
    fixed seed; without a valid.txt the validation split is a share of training
    (split_validation)."""
    valid = None
    if path.is_dir():
        train_path, test_path = path / "train.txt", path / "test.txt"
        train, test = read_lines(train_path), read_lines(test_path)
        checksums = {"train.txt": sha256_bytes(train_path.read_bytes()),
                     "test.txt": sha256_bytes(test_path.read_bytes())}
        if (path / "valid.txt").exists():
            valid = read_lines(path / "valid.txt")
            checksums["valid.txt"] = sha256_bytes((path / "valid.txt").read_bytes())
    else:
        lines = read_lines(path)
        if len(lines) < 2 * MIN_SPLIT_TEST:
            raise GanbenchError(f"{path}: has {len(lines)} line(s); at least "
                                f"{2 * MIN_SPLIT_TEST} are needed to make train and test "
                                f"splits that can be evaluated")
        order = list(range(len(lines)))
        random.Random(0).shuffle(order)
        n_test = max(MIN_SPLIT_TEST, len(lines) // 10)
        test = [lines[i] for i in sorted(order[:n_test])]
        train = [lines[i] for i in sorted(order[n_test:])]
        checksums = {path.name: sha256_bytes(path.read_bytes())}
    if valid is None:
        train, valid = split_validation(train)
    tokenization = Tokenization.infer(train, per_character=per_character)
    train_tokens = [s for s in tokenization.tokenize_all(train) if s]
    if not train_tokens:
        raise GanbenchError(f"{path}: no tokens in the training split")
    valid_tokens = [s for s in tokenization.tokenize_all(valid) if s]
    return Corpus(path.name, train_tokens, tokenization.tokenize_all(test), tokenization,
                  checksums, valid=valid_tokens)


def load_corpus(dataset: str, data_dir: Path | None = None, download: bool = True,
                per_character: bool = False) -> Corpus:
    """Resolve a dataset argument: 'oracle', a named corpus, or a path to a user file/folder."""
    if dataset == ORACLE_NAME:
        return load_oracle()
    if dataset == SEQGAN_ORACLE_NAME:
        return load_seqgan_oracle(Path(data_dir) if data_dir else default_data_dir(), download)
    if dataset in NAMED_CORPORA:
        return load_named(dataset, Path(data_dir) if data_dir else default_data_dir(), download)
    path = Path(dataset)
    if path.exists():
        return load_user_path(path, per_character=per_character)
    raise GanbenchError(
        f"unknown corpus {dataset!r}: no file or folder of that name exists here "
        f"({Path.cwd()}); use one of {', '.join(corpus_names())} or a path to a file")
