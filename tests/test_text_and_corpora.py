import hashlib
import shutil

import pytest

from bench.corpora import NAMED_CORPORA, load_corpus, read_lines
from bench.errors import GanbenchError
from bench.text import EOS, UNK, Tokenization, Vocabulary


def test_tokenization_splits_punctuation_and_collapses_blanks():
    words = Tokenization(lowercase=True)
    assert words.tokenize("A Bicycle  replica, with a clock.") == [
        "a", "bicycle", "replica", ",", "with", "a", "clock", "."]
    chars = Tokenization(per_character=True)
    assert chars.tokenize("秦 川 雄，") == ["秦", "川", "雄", "，"]


def test_case_is_kept_where_the_corpus_has_it():
    assert Tokenization.infer(["a dog .", "a cat ."]).lowercase
    assert not Tokenization.infer(["A dog .", "a cat ."]).lowercase


def test_vocabulary_from_training_split_only_and_unknowns():
    vocab = Vocabulary.from_sentences([["b", "a", "b"], ["c"]])
    assert vocab.tokens[4] == "b"  # most frequent first
    assert vocab.encode(["a", "zzz"]) == [vocab.index["a"], UNK]
    assert vocab.decode([vocab.index["b"], EOS, vocab.index["c"]]) == ["b"]


def test_named_corpora_load_with_checksums(coco, data_dir):
    # 10,000 training lines: 9,500 to train on, 500 held out for validation (METRICS.md).
    assert len(coco.train) == 9_500 and len(coco.valid) == 500 and len(coco.test) == 10_000
    assert coco.tokenization.lowercase
    expected = hashlib.sha256((data_dir / "coco" / "train.txt").read_bytes()).hexdigest()
    assert coco.sha256["train.txt"] == expected == NAMED_CORPORA["coco"].train.sha256
    # Max length and vocabulary come from the training split only: a hand-made corpus whose
    # test split has a longer sentence and a word the training split lacks.
    from bench.corpora import Corpus

    small = Corpus("small", [["a", "dog", "."], ["a", "cat", "runs", "."]],
                   [["a", "zebra", "runs", "far", "away", "."]], coco.tokenization)
    assert small.max_length == 4
    assert "zebra" not in small.vocab.index and len(small.vocab) == 4 + 5  # 4 specials
    news = load_corpus("news", data_dir)
    assert not news.tokenization.lowercase
    poems = load_corpus("chinese_poems", data_dir)
    assert poems.tokenization.per_character
    assert all(len(token) == 1 for token in poems.train[0])


def test_wrong_checksum_is_one_clear_error(tmp_path, data_dir):
    shutil.copytree(data_dir / "coco", tmp_path / "coco")
    (tmp_path / "coco" / "train.txt").chmod(0o644)
    with open(tmp_path / "coco" / "train.txt", "a") as handle:
        handle.write("\nan extra line")
    with pytest.raises(GanbenchError, match="does not match the published"):
        load_corpus("coco", tmp_path)


def test_missing_named_corpus_is_downloaded_from_a_mirror(tmp_path, data_dir, monkeypatch):
    # A file:// mirror laid out like the public origins.
    mirror = tmp_path / "mirror"
    for spec in ("coco", "news"):
        for split in ("train", "test"):
            source = getattr(NAMED_CORPORA[spec], split)
            target = mirror / source.origin_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(data_dir / spec / f"{split}.txt", target)
    monkeypatch.setenv("GANBENCH_CORPUS_MIRROR", mirror.as_uri())
    empty = tmp_path / "data"
    corpus = load_corpus("coco", empty)
    assert len(corpus.train) + len(corpus.valid) == 10_000
    written = (empty / "coco" / "test.txt").read_bytes()
    assert written == (data_dir / "coco" / "test.txt").read_bytes()
    # A corrupted mirror file is refused and nothing is written.
    bad = mirror / NAMED_CORPORA["news"].test.origin_path
    bad.write_text("not the news\n")
    with pytest.raises(GanbenchError, match="expected"):
        load_corpus("news", empty)
    assert not (empty / "news").exists()


def test_chinese_poems_download_slices_one_file(tmp_path, data_dir, monkeypatch):
    mirror = tmp_path / "mirror"
    whole = mirror / NAMED_CORPORA["chinese_poems"].train.origin_path
    whole.parent.mkdir(parents=True)
    whole.write_bytes((data_dir / "chinese_poems" / "train.txt").read_bytes()
                      + (data_dir / "chinese_poems" / "test.txt").read_bytes())
    monkeypatch.setenv("GANBENCH_CORPUS_MIRROR", mirror.as_uri())
    corpus = load_corpus("chinese_poems", tmp_path / "data")
    # 14,394 training poems, 5% of them (719) held out for validation.
    assert len(corpus.train) == 14_394 - 719 and len(corpus.valid) == 719
    assert len(corpus.test) == 2_000


@pytest.mark.parametrize("content, message", [
    (b"", "no non-blank lines"),
    (b"\n  \n", "no non-blank lines"),
    (b"caf\xe9 au lait\n", "not UTF-8"),
])
def test_bad_user_files(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(GanbenchError, match=message):
        load_corpus(str(path))


def test_user_file_is_split_deterministically(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"sentence number {i} ." for i in range(50)))
    first, second = load_corpus(str(path)), load_corpus(str(path))
    # 5 test lines; of the other 45, int(5% x 45) = 2 validate and 43 train.
    assert len(first.test) == 5 and len(first.train) == 43 and len(first.valid) == 2
    assert first.test == second.test
    assert read_lines(path)[0] == "sentence number 0 ."


def test_unknown_corpus():
    with pytest.raises(GanbenchError, match="unknown corpus"):
        load_corpus("no_such_corpus")
