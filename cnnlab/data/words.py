"""Words: which of six languages a word is from, read character by character.

Lecture 003, "Not just images": text, where "position in sentence" (here: in the word) is the
axis along which near things are related. The words come from Debian's word lists (packages
``wamerican``, ``wfrench``, ``wngerman``, ``wspanish``, ``witalian``, ``wdutch`` in
``/usr/share/dict``). The rules, in order: lowercase; drop words with an apostrophe or with any
character outside :data:`ALPHABET` (digits, hyphens, dots); drop words longer than
:data:`MAX_LENGTH`; drop every word found in more than one list (it has no single language);
then draw the same number of words from each language, 80% for training.

A word is a uint8 one-hot ``(len(ALPHABET), MAX_LENGTH)`` matrix: one channel per letter,
positions left-aligned, all-zero columns after the word's end (uint8: the values are 0/1).

    >>> from cnnlab.data.words import encode_word
    >>> encode_word("chat").shape
    torch.Size([50, 20])
"""

from __future__ import annotations

import collections
import functools
import itertools
import re
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.sequences import SequenceSet
from cnnlab.errors import DataError

ALPHABET = "abcdefghijklmnopqrstuvwxyz" + "àáâäåçèéêëìíîïñòóôöùúûüß"
MAX_LENGTH = 20
DICT_DIR = Path("/usr/share/dict")
# language -> (file in /usr/share/dict, Debian package that installs it)
WORD_LISTS: dict[str, tuple[str, str]] = {
    "english": ("american-english", "wamerican"),
    "french": ("french", "wfrench"),
    "german": ("ngerman", "wngerman"),
    "spanish": ("spanish", "wspanish"),
    "italian": ("italian", "witalian"),
    "dutch": ("dutch", "wdutch"),
}


def read_word_list(language: str, dict_dir: Path = DICT_DIR) -> set[str]:
    """The lowercased words of one list that pass the character and length rules."""
    name, package = WORD_LISTS[language]
    path = Path(dict_dir) / name
    try:
        lines = path.read_text(encoding="utf-8").lower().splitlines()
    except FileNotFoundError:
        raise DataError(f"words needs the {language} word list {path}: apt-get install "
                        f"{package} (Debian package {package})") from None
    fits = re.compile(f"[{ALPHABET}]{{1,{MAX_LENGTH}}}").fullmatch  # letters only, short enough
    return {word for word in {line.strip() for line in lines} if fits(word)}


@functools.lru_cache(maxsize=2)
def unique_words(dict_dir: Path = DICT_DIR) -> dict[str, tuple[str, ...]]:
    """Each language's words that no other list has, sorted (deterministic)."""
    lists = {language: read_word_list(language, dict_dir) for language in WORD_LISTS}
    seen = collections.Counter(itertools.chain.from_iterable(lists.values()))
    return {language: tuple(sorted(w for w in words if seen[w] == 1))
            for language, words in lists.items()}


def encode_word(word: str, length: int = MAX_LENGTH) -> torch.Tensor:
    """``word`` (lowercased) as uint8 one-hot ``(len(ALPHABET), length)``; a DataError for a
    character outside the alphabet or a word longer than ``length``."""
    word = word.strip().lower()
    outside = sorted(set(word) - set(ALPHABET))
    if outside or not word:
        what = f"characters outside the alphabet {outside}" if outside else "no letters"
        raise DataError(f"word {word!r} has {what}; words use a-z and the accented letters "
                        f"{ALPHABET[26:]}")
    if len(word) > length:
        raise DataError(f"word {word!r} has {len(word)} letters; the models read at most {length}")
    return one_hot([word], length)[0]


def one_hot(words: list[str], length: int = MAX_LENGTH) -> torch.Tensor:
    """Checked words -> uint8 ``(N, len(ALPHABET), length)``, in one scatter."""
    index = {c: i for i, c in enumerate(ALPHABET)}
    sample = [n for n, word in enumerate(words) for _ in word]
    letter = [index[c] for word in words for c in word]
    position = [p for word in words for p in range(len(word))]
    onehot = torch.zeros(len(words), len(ALPHABET), length, dtype=torch.uint8)  # (N, A, L)
    onehot[sample, letter, position] = 1
    return onehot


def split_words(per_language: int, seed: int, dict_dir: Path,
                train_fraction: float = 0.8) -> dict[str, list[tuple[str, int]]]:
    """(word, language index) pairs per split: ``per_language`` words of each language."""
    lists = unique_words(Path(dict_dir).resolve())
    smallest = min(len(words) for words in lists.values())
    if per_language > smallest:
        raise DataError(f"words: per_language={per_language} but one list has only {smallest} "
                        f"usable words; choose at most {smallest}")
    rng = np.random.default_rng(seed)
    cut = int(per_language * train_fraction)
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label, language in enumerate(WORD_LISTS):
        chosen = rng.choice(len(lists[language]), size=per_language, replace=False)
        words = [lists[language][i] for i in chosen]
        splits["train"] += [(w, label) for w in words[:cut]]
        splits["test"] += [(w, label) for w in words[cut:]]
    return splits


def load_words(split: str = "train", *, per_language: int = 5000, seed: int = 0,
               dict_dir: str | Path = DICT_DIR) -> SequenceSet:
    """The ``split`` of the six-language word set: uint8 ``(N, 50, 20)`` one-hot words."""
    pairs = split_words(per_language, seed, Path(dict_dir))[split]
    data = one_hot([word for word, _ in pairs])  # (N, A, L); every word passed the rules
    labels = torch.tensor([label for _, label in pairs], dtype=torch.int64)
    return SequenceSet(data, labels, list(WORD_LISTS), "words",
                       {"words": [word for word, _ in pairs], "alphabet": ALPHABET,
                        "max_length": MAX_LENGTH, "per_language": per_language, "seed": seed,
                        "split": split, "axes": ["character"]})
