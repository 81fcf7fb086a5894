"""Named sample data shipped inside installed PyPI packages (the `samples` extra).

Located through the installed package, never a machine path, and without importing the
package (importing gensim or konlpy is slow and pulls in more than a path lookup needs).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# name -> (package, path inside the package, glob or None)
SAMPLES: dict[str, tuple[str, str, str | None]] = {
    "enwiki": ("gensim", "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2", None),
    "lee": ("gensim", "test/test_data/lee_background.cor", None),
    "polarity": ("gensim", "test/test_data/pang_lee_polarity.cor", None),
    "wordsim353": ("gensim", "test/test_data/wordsim353.tsv", None),
    "analogies": ("gensim", "test/test_data/questions-words.txt", None),
    "ko-constitution": ("konlpy", "data/corpus/kolaw/constitution.txt", None),
    "ko-bills": ("konlpy", "data/corpus/kobill", "*.txt"),
}

PREFIX = "sample:"


class SampleNotFound(FileNotFoundError):
    """A named sample whose package is not installed (install the `samples` extra)."""


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SampleNotFound(f"package '{package}' is not installed: pip install 'plm[samples]'")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_sample(name: str) -> list[Path]:
    """Files behind `sample:NAME` (or `NAME`), sorted."""
    key = name.removeprefix(PREFIX)
    if key not in SAMPLES:
        raise SampleNotFound(f"unknown sample '{name}'; known: {', '.join(PREFIX + k for k in SAMPLES)}")
    package, rel, pattern = SAMPLES[key]
    path = package_dir(package) / rel
    files = sorted(path.glob(pattern)) if pattern else [path]
    if not files or not all(f.is_file() for f in files):
        raise SampleNotFound(f"sample '{name}' not found under {path}")
    return files


def is_sample(entry: str) -> bool:
    return entry.startswith(PREFIX)
