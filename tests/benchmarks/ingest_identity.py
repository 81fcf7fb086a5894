"""Byte-identity of ingest outputs between two checkouts: a tool for speed work on the ingest hot paths.

`python tests/benchmarks/ingest_identity.py OLD_ROOT NEW_ROOT [--quick]` ingests the same corpora with the code
of each root (a child interpreter per root, PYTHONPATH=ROOT) and compares, case by case, the sha256 of every lake
file, the catalog rows (`sources` without `ingested_at`, `quarantine` with its raw bytes' sha256, `doc_hashes`,
`snapshots.counts`) and the IngestResult counts and reasons; exit status 1 on any difference.

`python tests/benchmarks/ingest_identity.py dump ROOT OUT.json [--quick]` writes one side only.

Cases: the benchmark's English corpus (paragraphs, exact dedup; with --quick its 2 MB cut), its 8 MB cut with
near-dup and small batches (cross-batch dedup), the varied Korean copies (Kiwi and regex sentences), the shipped
samples (`sample:lee`, `sample:enwiki`, `sample:ko-constitution`) and the test assets (`tests/assets/corpus`,
`tests/assets/hostile`) as files, paragraphs and lines. The benchmark corpora come from
`tests/benchmarks/bench_ingest.py` (prepared once under $PLM_BENCH_DATA).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ASSETS = HERE.parents[1] / "assets"


def _cases(quick: bool) -> list[tuple[str, list[str], dict]]:
    sys.path.insert(0, str(HERE.parent))
    import bench_ingest as b

    def files(paths: list[Path]) -> list[str]:
        return [str(p) for p in paths]

    en = files(b.prepare_english(2.0 if quick else None))
    en8 = files(b.prepare_english(8.0))
    ko = files(b.prepare_korean())
    cases: list[tuple[str, list[str], dict]] = []
    if en:
        cases += [
            ("en-paragraph-exact", en, {"text_unit": "paragraph"}),
            ("en8-paragraph-near-small-batches", en8, {"text_unit": "paragraph", "near_dup": True,
                                                       "batch_records": 3000}),
            ("en8-line-exact", en8, {"text_unit": "line"}),
        ]
    if ko:
        cases += [
            ("ko-paragraph-regex-near", ko, {"text_unit": "paragraph", "korean_sentences": "regex", "near_dup": True}),
        ]
    cases += [
        ("sample-lee-line", ["sample:lee"], {"text_unit": "line"}),
        ("sample-lee-file-langid", ["sample:lee"], {"text_unit": "file", "detect_language": True}),
        ("sample-ko-constitution-line-kiwi", ["sample:ko-constitution"], {"text_unit": "line"}),
        ("sample-ko-constitution-paragraph-nfkc", ["sample:ko-constitution"],
         {"text_unit": "paragraph", "normalization": "NFKC", "korean_sentences": "regex"}),
        ("assets-corpus-paragraph-near", [str(ASSETS / "corpus")], {"text_unit": "paragraph", "near_dup": True,
                                                                   "batch_records": 7}),
        ("assets-corpus-line", [str(ASSETS / "corpus")], {"text_unit": "line"}),
        ("assets-hostile-paragraph", [str(ASSETS / "hostile")], {"text_unit": "paragraph"}),
        ("assets-hostile-line", [str(ASSETS / "hostile")], {"text_unit": "line"}),
        ("assets-hostile-file", [str(ASSETS / "hostile")], {"text_unit": "file"}),
    ]
    if not quick:
        cases.append(("sample-enwiki", ["sample:enwiki"], {}))
    return cases


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _dump_case(paths: list[str], options: dict, home: Path) -> dict:
    from plm.config import CorpusSpec
    from plm.corpus.ingest import connect_catalog, ingest_corpus

    roots = sorted({str(Path(p).parent if Path(p).is_file() else Path(p)) for p in paths if not p.startswith("sample:")})
    cfg = CorpusSpec(paths=paths, allowed_roots=roots, max_quarantined_fraction=1.0, **options)
    t0 = time.perf_counter()
    try:
        result = ingest_corpus(cfg, home)
        out: dict = {"counts": result.counts, "reasons": result.reasons}
    except ValueError as exc:  # e.g. nothing kept: the message is part of the behaviour
        out = {"error": str(exc)}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    lake = home / "lake" / "documents"
    out["lake"] = {f.name: _sha(f.read_bytes()) for f in sorted(lake.glob("*.parquet"))}
    con = connect_catalog(home, read_only=True)
    try:
        def rows(query: str) -> list:
            return [list(r) for r in con.execute(query).fetchall()]

        out["sources"] = rows("SELECT * EXCLUDE (ingested_at) FROM sources ORDER BY path, options")
        out["quarantine"] = [r[:4] + [_sha(r[4])] for r in
                             rows("SELECT source_sha256, options, position, reason, raw FROM quarantine "
                                  "ORDER BY source_sha256, options, position, reason")]
        out["doc_hashes"] = _sha(json.dumps(rows("SELECT doc_id, source_sha256, options FROM doc_hashes "
                                                 "ORDER BY ALL")).encode())
        out["snapshots"] = rows("SELECT snapshot_id, options, counts FROM snapshots ORDER BY snapshot_id")
    finally:
        con.close()
    return out


def dump(root: str, target: str, quick: bool) -> None:
    """In this interpreter (`root` first on sys.path): every case into its own home, the results as JSON."""
    sys.path.insert(0, str(Path(root).resolve()))
    import plm

    assert Path(plm.__file__).resolve().is_relative_to(Path(root).resolve()), (plm.__file__, root)
    results = {}
    with tempfile.TemporaryDirectory(prefix="plm-identity-") as tmp:
        for name, paths, options in _cases(quick):
            results[name] = _dump_case(paths, options, Path(tmp) / name)
            print(f"  {name}: {results[name]['seconds']} s", file=sys.stderr, flush=True)
    Path(target).write_text(json.dumps(results, indent=1, sort_keys=True, default=str))


def _run_side(root: str, target: Path, quick: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": root}
    args = [sys.executable, str(HERE), "dump", root, str(target)] + (["--quick"] if quick else [])
    print(f"{root}:", file=sys.stderr, flush=True)
    subprocess.run(args, env=env, check=True)
    return json.loads(target.read_text())


def compare(old_root: str, new_root: str, quick: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="plm-identity-") as tmp:
        old = _run_side(old_root, Path(tmp) / "old.json", quick)
        new = _run_side(new_root, Path(tmp) / "new.json", quick)
    bad = 0
    for name in old:
        a, b = dict(old[name]), dict(new.get(name, {}))
        ta, tb = a.pop("seconds", 0), b.pop("seconds", 0)
        same = a == b
        bad += not same
        detail = "" if same else " DIFFERENT in " + ", ".join(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        print(f"{name:<44} {len(a.get('lake', {})):>3} lake files {'identical' if same else ''}{detail}"
              f"  ({ta:.1f} s -> {tb:.1f} s)")
    print(f"{len(old) - bad} of {len(old)} cases byte-identical")
    return 1 if bad else 0


if __name__ == "__main__":
    argv = [a for a in sys.argv[1:] if a != "--quick"]
    quick = "--quick" in sys.argv
    if argv[0] == "dump":
        dump(argv[1], argv[2], quick)
    else:
        sys.exit(compare(argv[0], argv[1], quick))
