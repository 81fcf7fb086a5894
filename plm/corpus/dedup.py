"""Near-duplicate detection: MinHash signatures, LSH banding and an index kept in the catalog.

A document is lower-cased word n-grams ("shingles"; words split on whitespace, punctuation trimmed
from their edges). Everything runs vectorised over a batch of documents, no Python loop per shingle:

1. words: Arrow splits the texts and dictionary-encodes the words, so each distinct word of a batch
   is hashed once (a polynomial hash over its UTF-8 bytes in numpy, then a 64-bit finaliser);
2. shingles: n consecutive word hashes of a document combined with fixed odd multipliers;
3. signatures: `num_perm` hash functions h_i(x) = a_i*x + b_i (mod 2^32), bijections of the 32-bit
   shingle hash, so each slot is a min-wise sample and two signatures agree in a slot with
   probability = Jaccard similarity. The minima are taken by a compiled loop (numba) over each
   document's shingles; rensa (Rust) computes the same kind of signature at about the same speed
   (tests/benchmarks/bench_ingest.py `minhash_rensa`) but with other permutations;
4. LSH: `bands` x `rows` slots hashed per band; documents sharing a band hash are candidates,
   confirmed when their signatures agree in >= `threshold` of the slots.

All coefficients come from a seed fixed in this file, so signatures, band hashes and the persisted
index are identical across runs and machines. The index (kept documents' signatures and band
hashes, and the clusters found) lives in catalog tables written in the caller's transaction;
`NearDupIndex` is the API the ingest stage uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plm import sql
from plm.config import CorpusSpec, SpecError

DEDUP_VERSION = 1
"""Bump when shingling or hashing changes: indexes built by other versions are then ignored."""
MAX_PERM = 1024
_SEED = 0x706C6D2D6E656172  # "plm-near": fixed, so every run and machine hashes identically
_U64 = np.uint64
_MAX32 = np.uint32(0xFFFFFFFF)
# Trimmed from both ends of a word before hashing: "word," and "(word" shingle like "word".
_PUNCT = (
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"  # ASCII
    "\u00ab\u00bb\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00b7"  # guillemets, curly quotes, dashes, ellipsis
    "\u3001\u3002\u300c\u300d\u300e\u300f\u300a\u300b\u3008\u3009\uff08\uff09\uff0c\uff0e"  # CJK
)
# Documents are padded to the next of these shingle counts (steps of ~1.25x: < 25 % padding).
# LSH parameters are chosen with false negatives weighted 9:1 over false positives: candidates are
# verified on the whole signature, so a spurious candidate costs a comparison, a missed one a duplicate.
_FP_WEIGHT, _FN_WEIGHT = 0.1, 0.9

Texts = Union[Sequence[str], pa.Array, pa.ChunkedArray]


def _coefficients() -> dict[str, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(_SEED))
    odd = lambda n: rng.integers(1, 2**63, n, dtype=np.uint64) | _U64(1)  # noqa: E731
    return {
        "byte_pow": _U64(0x100000001B3) ** np.arange(256, dtype=np.uint64),  # FNV prime powers, wrap mod 2^64
        "word_mul": odd(64),  # position multipliers inside a shingle
        "perm_a": (rng.integers(0, 2**32, MAX_PERM, dtype=np.uint64) | _U64(1)).astype(np.uint32),
        "perm_b": rng.integers(0, 2**32, MAX_PERM, dtype=np.uint64).astype(np.uint32),
        "row_mul": odd(MAX_PERM),
        "band_salt": rng.integers(0, 2**63, MAX_PERM, dtype=np.uint64),
    }


_C = _coefficients()


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (in place on a fresh array): spreads every input bit over all output bits."""
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


# ---------------------------------------------------------------- parameters


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising the weighted false positive/negative areas.

    The S-curve P(candidate | s) = 1 - (1 - s^rows)^bands; false positives are the area under it
    below `threshold`, false negatives the area above it (the criterion of datasketch's MinHashLSH).
    """
    s = np.linspace(0.0, 1.0, 1001)
    below, above = s <= threshold, s >= threshold
    best, best_err = (1, num_perm), np.inf
    for bands in range(1, num_perm + 1):
        rows = np.arange(1, num_perm // bands + 1)
        p = 1.0 - (1.0 - s[None, :] ** rows[:, None]) ** bands  # (rows, s)
        fp = np.trapezoid(np.where(below, p, 0.0), s, axis=1)
        fn = np.trapezoid(np.where(above, 1.0 - p, 0.0), s, axis=1)
        err = _FP_WEIGHT * fp + _FN_WEIGHT * fn
        i = int(np.argmin(err))
        if err[i] < best_err:
            best, best_err = (bands, int(rows[i])), float(err[i])
    return best


@dataclass(frozen=True)
class MinHashParams:
    """Everything that determines signatures, band hashes and the decision."""

    num_perm: int = 128
    bands: int = 14
    rows: int = 9
    shingle: int = 5
    threshold: float = 0.8

    @classmethod
    def from_spec(cls, cfg: CorpusSpec) -> MinHashParams:
        """From `corpus.minhash_*` and `corpus.near_dup_threshold` (bands chosen for the threshold when unset)."""
        if cfg.minhash_bands is None:
            bands, rows = lsh_params(cfg.near_dup_threshold, cfg.minhash_num_perm)
        elif cfg.minhash_bands > cfg.minhash_num_perm:
            raise SpecError("corpus.minhash_bands must be <= corpus.minhash_num_perm")
        else:
            bands, rows = cfg.minhash_bands, cfg.minhash_num_perm // cfg.minhash_bands
        return cls(cfg.minhash_num_perm, bands, rows, cfg.minhash_shingle, cfg.near_dup_threshold)

    @property
    def scheme(self) -> str:
        """12 hex chars naming this configuration: index rows of another scheme are never compared."""
        key = f"v{DEDUP_VERSION}:{self.num_perm}:{self.bands}x{self.rows}:{self.shingle}:{self.threshold!r}"
        return hashlib.sha256(key.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- shingles and signatures


def _string_array(texts: Texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(texts, pa.large_string())
    return texts


def _offsets(arr: pa.Array) -> np.ndarray:
    """Value offsets of a (large_)string or list array, as int64, honouring a slice offset."""
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) or pa.types.is_large_list(arr.type)
    width = np.int64 if large else np.int32
    raw = np.frombuffer(arr.buffers()[1], width, len(arr) + 1, offset=arr.offset * np.dtype(width).itemsize)
    return raw.astype(np.int64)


def _string_hashes(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 hash, byte length) of every string: sum(byte_i * P^i) mod 2^64, then mixed with the length."""
    offs = _offsets(strings)
    lens = np.diff(offs)
    out = np.zeros(len(strings), np.uint64)
    total = int(offs[-1] - offs[0])
    if total:
        data = np.frombuffer(strings.buffers()[2], np.uint8)[offs[0] : offs[-1]]
        starts = offs[:-1] - offs[0]
        pos = np.arange(total, dtype=np.int64) - np.repeat(starts, lens)
        contrib = (data.astype(np.uint64) + _U64(1)) * _C["byte_pow"][pos & 255]
        nonempty = lens > 0
        out[nonempty] = np.add.reduceat(contrib, starts[nonempty])
    out ^= lens.astype(np.uint64) * _U64(0x9E3779B97F4A7C15)
    return _mix(out), lens


def shingle_hashes(texts: Texts, shingle: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of each document's word `shingle`-grams, concatenated, and the count per document.

    A document with fewer words than `shingle` has one shingle (all its words); one without words none.
    """
    arr = _string_array(texts)
    n_docs = len(arr)
    words = pc.utf8_split_whitespace(arr)
    word_offs = _offsets(words)
    flat = words.flatten()
    encoded = pc.dictionary_encode(flat)
    # Only distinct words are trimmed, lower-cased and hashed; words that were pure punctuation vanish.
    vocab = pc.utf8_lower(pc.utf8_trim(encoded.dictionary, _PUNCT))
    vocab_hash, vocab_len = _string_hashes(vocab)
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    keep = (vocab_len > 0)[idx]
    wh = vocab_hash[idx][keep]
    kept_before = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(keep, out=kept_before[1:])
    wstart = kept_before[word_offs - word_offs[0]]
    nwords = np.diff(wstart)
    n = len(wh)
    wdoc = np.repeat(np.arange(n_docs), nwords)
    doc_end = wstart[1:][wdoc]
    j = np.arange(n, dtype=np.int64)
    mul = _C["word_mul"]
    acc = wh * mul[0]
    shifted = np.empty(n, np.uint64)
    for t in range(1, shingle):
        k = max(n - t, 0)  # a batch with fewer words than a shingle has nothing to shift in
        shifted[:k] = wh[t:]
        shifted[k:] = 0
        shifted[j + t >= doc_end] = 0  # words of the next document do not belong to this shingle
        acc += shifted * mul[t]
    first = (j + shingle - 1 < doc_end) | ((j == wstart[:-1][wdoc]) & (nwords[wdoc] < shingle))
    return _mix(acc[first]), np.bincount(wdoc[first], minlength=n_docs).astype(np.int64)


def _signature_loop(x: np.ndarray, starts: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray,
                    sig: np.ndarray) -> None:
    mask = np.uint64(0xFFFFFFFF)
    for d in range(counts.size):
        row = sig[d]
        for k in range(starts[d], starts[d] + counts[d]):
            xv = np.uint64(x[k])
            for p in range(a.size):  # (a*x + b) mod 2^32: < 2^64 before the mask, no overflow
                h = np.uint32((xv * np.uint64(a[p]) + np.uint64(b[p])) & mask)
                if h < row[p]:
                    row[p] = h


@lru_cache(maxsize=1)
def _signature_kernel() -> Any:
    """`_signature_loop` compiled (numba's on-disk cache): imported and loaded on the first near-dup batch
    only, since numba's start-up (about a second per process) would otherwise burden every ingest."""
    import numba

    return numba.njit(cache=True, nogil=True)(_signature_loop)


def _signatures_from_hashes(hashes: np.ndarray, counts: np.ndarray, num_perm: int) -> np.ndarray:
    """(docs, num_perm) uint32 minima of a_i*x + b_i (mod 2^32) over each document's shingle hashes x (top 32 bits).

    A compiled loop (numba): the same minima as the numpy broadcast it replaced, about 6x faster and without
    its (shingles x num_perm) temporaries; documents without shingles keep 2^32 - 1 in every slot."""
    x = (hashes >> _U64(32)).astype(np.uint32)
    a, b = _C["perm_a"][:num_perm], _C["perm_b"][:num_perm]
    n = len(counts)
    sig = np.full((n, num_perm), _MAX32, np.uint32)
    starts = np.zeros(n, np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    _signature_kernel()(x, starts, counts.astype(np.int64), np.ascontiguousarray(a), np.ascontiguousarray(b), sig)
    return sig


def minhash_signatures(texts: Texts, num_perm: int = 128, shingle: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (docs, num_perm) uint32, shingles per document); a document without words has 0 shingles."""
    if not 1 <= num_perm <= MAX_PERM:
        raise ValueError(f"num_perm must be in 1..{MAX_PERM}, got {num_perm}")
    hashes, counts = shingle_hashes(texts, shingle)
    return _signatures_from_hashes(hashes, counts, num_perm), counts


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs, bands) uint64: one hash per band of `rows` consecutive signature slots (band index mixed in)."""
    n = signatures.shape[0]
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"bands*rows = {bands * rows} exceeds the signature length {signatures.shape[1]}")
    slots = signatures[:, : bands * rows].reshape(n, bands, rows)
    acc = np.repeat(_C["band_salt"][None, :bands], n, axis=0)
    for j in range(rows):  # a loop over the few rows: numpy sums over a short inner axis are slow
        acc += slots[:, :, j].astype(np.uint64) * _C["row_mul"][j]
    return _mix(acc)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of agreeing signature slots (last axis): the MinHash estimate of Jaccard similarity."""
    return (np.asarray(a) == np.asarray(b)).mean(axis=-1)


def exact_jaccard(a: str, b: str, shingle: int = 5) -> float:
    """Exact Jaccard similarity of two texts' shingle-hash sets (the quantity signatures estimate)."""
    hashes, counts = shingle_hashes([a, b], shingle)
    sa, sb = set(hashes[: counts[0]].tolist()), set(hashes[counts[0] :].tolist())
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


# ---------------------------------------------------------------- the persistent index


class _SortedRuns:
    """A multiset of (band hash -> seq) as a few sorted runs (log-structured: runs merge when similar in size)."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(keys) for keys, _ in self.runs)

    def add(self, keys: np.ndarray, seqs: np.ndarray) -> None:
        if not len(keys):
            return
        order = np.argsort(keys, kind="stable")
        self.runs.append((keys[order], seqs[order]))
        # Merging two sorted runs with a stable sort is linear (timsort finds the runs).
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            (k1, s1), (k2, s2) = self.runs[-2], self.runs.pop()
            keys_, seqs_ = np.concatenate([k1, k2]), np.concatenate([s1, s2])
            order = np.argsort(keys_, kind="stable")
            self.runs[-1] = (keys_[order], seqs_[order])

    def extend(self, other: _SortedRuns) -> None:
        for keys, seqs in other.runs:
            self.add(keys, seqs)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query position, seq) for every stored entry equal to a query key."""
        found_q, found_s = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        if not self.runs or not len(keys):
            return found_q[0], found_s[0]
        # Sorted queries make the binary searches walk the run in order (about 5x fewer cache misses).
        order = np.argsort(keys)
        sorted_keys = keys[order]
        for run_keys, run_seqs in self.runs:
            lo = np.searchsorted(run_keys, sorted_keys, side="left")
            hit = np.flatnonzero(run_keys[np.minimum(lo, len(run_keys) - 1)] == sorted_keys)
            if not len(hit):
                continue
            lo = lo[hit]
            n = np.searchsorted(run_keys, sorted_keys[hit], side="right") - lo
            # every stored position lo .. lo+n-1 of each hit, flattened
            pos = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
            found_q.append(np.repeat(order[hit], n))
            found_s.append(run_seqs[pos])
        return np.concatenate(found_q), np.concatenate(found_s)


def _signature_column(sigs: np.ndarray) -> pa.Array:
    """Signatures as fixed-size little-endian BLOBs (zero copy)."""
    data = np.ascontiguousarray(sigs, dtype="<u4")
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(data.shape[1] * 4), len(data), [None, pa.py_buffer(data)])


def _signatures_of(column: pa.ChunkedArray | pa.Array, num_perm: int) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = arr.cast(pa.large_binary())
    if not len(arr):
        return np.zeros((0, num_perm), np.uint32)
    offs = _offsets(arr)
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offs[0] : offs[-1]]
    if not (np.diff(offs) == num_perm * 4).all():
        raise ValueError(f"near_dup_docs holds signatures that are not {num_perm} uint32 values long")
    return data.view("<u4").reshape(len(arr), num_perm).astype(np.uint32)


_DDL = ("staging/ddl_near_dup_docs", "staging/ddl_near_dup_bands", "staging/ddl_near_duplicates")


class NearDupIndex:
    """Near-duplicate memory of the lake: kept documents' signatures and band hashes in the catalog.

    Usage (under the catalog lock, one index per ingest):

        index = NearDupIndex.open(con, cfg, options=optsfp)
        reps = index.check_and_add(doc_ids, texts, source_sha256=sha)  # per batch, in document order
        con.begin(); index.forget(sha) (when re-processing); index.commit(); ...; con.commit()
        # or index.rollback() when the source fails (also after a failed transaction)

    Documents are compared with every document kept earlier: in earlier ingests (same `options` and
    MinHash scheme), in earlier sources of this ingest and earlier in the same source, the earliest
    kept one winning. Committed rows of the same source are ignored, so re-processing a source never
    marks its documents as copies of themselves. Memory: the band hashes of all indexed documents
    (16 bytes per band per document) plus the signatures of the pending (uncommitted) ones.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, params: MinHashParams, scope: str, next_seq: int,
                 committed: _SortedRuns) -> None:
        self.con = con
        self.params = params
        self.scope = scope
        self._next_seq = next_seq
        self._committed = committed
        self._id_cache: dict[int, str] = {}  # seq -> doc_id of committed candidates fetched in this batch
        self._reset_pending()
        self.stats = {"checked": 0, "near_duplicates": 0, "candidate_pairs": 0, "no_shingles": 0}
        """Counts since `open`: documents checked, found near-duplicate, candidate pairs verified, without words."""

    @classmethod
    def open(cls, con: duckdb.DuckDBPyConnection, cfg: CorpusSpec, options: str = "") -> NearDupIndex:
        """Creates the catalog tables if absent and loads the band hashes of `options` + this MinHash scheme."""
        for name in _DDL:
            sql.execute(con, name)
        params = MinHashParams.from_spec(cfg)
        scope = f"{options}:{params.scheme}" if options else params.scheme
        next_seq = sql.run(con, "staging/sel_near_dup_next_seq").column("next_seq")[0].as_py()
        rows = sql.run(con, "staging/sel_near_dup_index", options=scope)
        committed = _SortedRuns()
        committed.add(rows.column("hash").to_numpy().astype(np.uint64), rows.column("seq").to_numpy().astype(np.int64))
        return cls(con, params, scope, int(next_seq), committed)

    def _reset_pending(self) -> None:
        self._pending = _SortedRuns()
        self._pending_base = self._next_seq  # pending seqs are _pending_base .. _next_seq - 1
        self._pending_sigs: list[np.ndarray] = []  # per batch; batch i starts at seq _pending_starts[i]
        self._pending_starts: list[int] = []
        self._pending_keys: list[np.ndarray] = []
        self._pending_ids: list[str] = []
        self._pending_sources: list[str] = []
        self._pending_dups: list[tuple[str, str, float, str]] = []  # (doc_id, representative, similarity, source)

    def _pending_signatures(self, seqs: np.ndarray) -> np.ndarray:
        batch = np.searchsorted(np.asarray(self._pending_starts), seqs, side="right") - 1
        out = np.empty((len(seqs), self.params.num_perm), np.uint32)
        for b in np.unique(batch):
            at = batch == b
            out[at] = self._pending_sigs[b][seqs[at] - self._pending_starts[b]]
        return out

    def __len__(self) -> int:
        """Documents pending (checked, kept, not yet committed)."""
        return self._next_seq - self._pending_base

    def check_and_add(self, doc_ids: list[str], texts: Texts, source_sha256: str = "") -> list[str | None]:
        """For each document, in order: the representative doc_id it near-duplicates, or None (kept: added, pending).

        `texts` may be a list of str or an Arrow string column (faster: no conversion).
        """
        if len(texts) != len(doc_ids):
            raise ValueError(f"check_and_add: {len(doc_ids)} doc_ids but {len(texts)} texts")
        sigs, counts = minhash_signatures(texts, self.params.num_perm, self.params.shingle)
        return self.check_and_add_signatures(doc_ids, sigs, counts, source_sha256)

    def check_and_add_signatures(self, doc_ids: list[str], sigs: np.ndarray, counts: np.ndarray,
                                 source_sha256: str = "") -> list[str | None]:
        """`check_and_add` for signatures computed elsewhere (`minhash_signatures` with this index's `params`,
        e.g. by an ingest map task on another worker): `sigs` (docs, num_perm) uint32, `counts` shingles per doc."""
        n = len(doc_ids)
        p = self.params
        if sigs.shape != (n, p.num_perm) or len(counts) != n:
            raise ValueError(f"check_and_add_signatures: {n} doc_ids, signatures {sigs.shape}, {len(counts)} counts; "
                             f"expected ({n}, {p.num_perm})")
        keys = band_hashes(sigs, p.bands, p.rows)
        has_words = counts > 0
        rep_seq = np.full(n, -1, np.int64)  # external representative (earlier batch or ingest)
        rep_sim = np.zeros(n)
        self._id_cache.clear()
        self.stats["checked"] += n
        self.stats["no_shingles"] += int((~has_words).sum())

        # 1. Earlier documents outside this batch: band-hash hits, then verification on the whole signature.
        flat = keys[has_words].ravel()
        rows_of_flat = np.repeat(np.flatnonzero(has_words), p.bands)
        q, seqs = self._hits(flat)
        if len(q):
            pairs = np.unique(np.stack([rows_of_flat[q], seqs], axis=1), axis=0)
            rows, seqs = pairs[:, 0], pairs[:, 1]
            cand_sigs, found = self._candidate_signatures(seqs, source_sha256)
            # A candidate with the document's own id is its earlier self (exact copies are exact dedup's job).
            found &= np.array([found[i] and self._doc_id(int(s)) != doc_ids[r]
                               for i, (r, s) in enumerate(zip(rows.tolist(), seqs.tolist()))], bool)
            rows, seqs, cand_sigs = rows[found], seqs[found], cand_sigs[found]
            self.stats["candidate_pairs"] += len(rows)
            sims = estimated_jaccard(sigs[rows], cand_sigs)
            ok = sims >= p.threshold
            # earliest (smallest seq) confirmed representative per row: pairs are sorted by (row, seq)
            rows, seqs, sims = rows[ok], seqs[ok], sims[ok]
            first = np.unique(rows, return_index=True)[1]
            rep_seq[rows[first]] = seqs[first]
            rep_sim[rows[first]] = sims[first]

        # 2. Earlier documents of this batch: sequential, but only over rows sharing a band hash.
        in_batch = self._resolve_in_batch(keys, sigs, has_words & (rep_seq < 0))

        out: list[str | None] = [None] * n
        for i in np.flatnonzero(rep_seq >= 0):
            out[i] = self._doc_id(int(rep_seq[i]))
            self._pending_dups.append((doc_ids[i], out[i], float(rep_sim[i]), source_sha256))
        for i in np.flatnonzero(in_batch >= 0):
            j = int(in_batch[i])
            out[i] = doc_ids[j]
            self._pending_dups.append((doc_ids[i], doc_ids[j], float(estimated_jaccard(sigs[i], sigs[j])), source_sha256))
        self.stats["near_duplicates"] += int((rep_seq >= 0).sum() + (in_batch >= 0).sum())

        kept_rows = np.flatnonzero(has_words & (rep_seq < 0) & (in_batch < 0))
        new_seqs = self._next_seq + np.arange(len(kept_rows), dtype=np.int64)
        if len(kept_rows):
            self._pending_sigs.append(sigs[kept_rows])
            self._pending_starts.append(self._next_seq)
        self._next_seq += len(kept_rows)
        self._pending.add(keys[kept_rows].ravel(), np.repeat(new_seqs, p.bands))
        self._pending_keys.append(keys[kept_rows])
        self._pending_ids.extend(doc_ids if len(kept_rows) == n else [doc_ids[i] for i in kept_rows])
        self._pending_sources.extend([source_sha256] * len(kept_rows))
        return out

    def _doc_id(self, seq: int) -> str:
        return self._pending_ids[seq - self._pending_base] if seq >= self._pending_base else self._id_cache[seq]

    def _hits(self, flat_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q1, s1 = self._committed.lookup(flat_keys)
        q2, s2 = self._pending.lookup(flat_keys)
        return np.concatenate([q1, q2]), np.concatenate([s1, s2])

    def _candidate_signatures(self, seqs: np.ndarray, source_sha256: str) -> tuple[np.ndarray, np.ndarray]:
        """Signatures for candidate seqs (pending ones from memory, committed ones from the catalog) and which exist."""
        out = np.zeros((len(seqs), self.params.num_perm), np.uint32)
        found = np.zeros(len(seqs), bool)
        pending = seqs >= self._pending_base
        if pending.any():
            out[pending] = self._pending_signatures(seqs[pending])
            found[pending] = True
        committed = ~pending
        if committed.any():
            wanted = np.unique(seqs[committed])
            table = self._fetch(wanted, source_sha256)
            got_seq = table.column("seq").to_numpy().astype(np.int64)
            got_sig = _signatures_of(table.column("signature"), self.params.num_perm)
            self._id_cache.update(zip(got_seq.tolist(), table.column("doc_id").to_pylist()))
            order = np.argsort(got_seq)
            pos = np.searchsorted(got_seq[order], seqs[committed])
            pos = np.minimum(pos, max(len(got_seq) - 1, 0))
            hit = (got_seq[order][pos] == seqs[committed]) if len(got_seq) else np.zeros(int(committed.sum()), bool)
            idx = np.flatnonzero(committed)
            out[idx[hit]] = got_sig[order][pos[hit]]
            found[idx[hit]] = True
        return out, found

    def _fetch(self, seqs: np.ndarray, source_sha256: str) -> pa.Table:
        self.con.register("near_dup_query", pa.table({"seq": pa.array(seqs, pa.int64())}))
        try:
            return sql.run(self.con, "staging/sel_near_dup_signatures", options=self.scope, source_sha256=source_sha256)
        finally:
            self.con.unregister("near_dup_query")

    def _resolve_in_batch(self, keys: np.ndarray, sigs: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """For each row, the earlier kept row of this batch it near-duplicates (-1: none)."""
        n, bands = keys.shape
        result = np.full(n, -1, np.int64)
        rows = np.flatnonzero(eligible)
        if len(rows) < 2:
            return result
        flat = keys[rows].ravel()
        _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        shared = (counts[inverse] > 1).reshape(len(rows), bands)
        hot = shared.any(axis=1)
        if not hot.any():
            return result
        # Rows are visited in order; each keeps a list of the kept rows under every shared band hash.
        kept_under: dict[int, list[int]] = {}
        threshold = self.params.threshold
        for r_i in np.flatnonzero(hot):
            row = int(rows[r_i])
            row_keys = [int(k) for k, s in zip(keys[row], shared[r_i]) if s]
            cands = sorted({c for k in row_keys for c in kept_under.get(k, ())})
            if cands:
                self.stats["candidate_pairs"] += len(cands)
                sims = estimated_jaccard(sigs[cands], sigs[row])
                ok = np.flatnonzero(sims >= threshold)
                if len(ok):
                    result[row] = cands[int(ok[0])]  # the earliest confirmed row
                    continue
            for k in row_keys:
                kept_under.setdefault(k, []).append(row)
        return result

    def commit(self) -> None:
        """Writes the pending documents, band hashes and cluster rows with `con` (inside the caller's transaction)."""
        if self._next_seq > self._pending_base:
            seqs = np.arange(self._pending_base, self._next_seq, dtype=np.int64)
            sigs = np.concatenate(self._pending_sigs)
            keys = np.concatenate(self._pending_keys)
            docs = pa.table({"seq": seqs, "doc_id": pa.array(self._pending_ids, pa.string()),
                             "source_sha256": pa.array(self._pending_sources, pa.string()),
                             "signature": _signature_column(sigs)})
            bands = pa.table({"seq": np.repeat(seqs, self.params.bands),
                              "band": np.tile(np.arange(self.params.bands, dtype=np.int16), len(seqs)),
                              "hash": keys.ravel()})
            self._insert("near_dup_docs_batch", docs, "staging/ins_near_dup_docs")
            self._insert("near_dup_bands_batch", bands, "staging/ins_near_dup_bands")
        if self._pending_dups:
            doc, rep, sim, src = zip(*self._pending_dups)
            dups = pa.table({"doc_id": pa.array(doc, pa.string()), "representative_doc_id": pa.array(rep, pa.string()),
                             "similarity": pa.array(sim, pa.float64()), "source_sha256": pa.array(src, pa.string())})
            self._insert("near_duplicates_batch", dups, "staging/ins_near_duplicates")
        self._committed.extend(self._pending)
        self._reset_pending()

    def _insert(self, name: str, table: pa.Table, statement: str) -> None:
        self.con.register(name, table)
        try:
            sql.execute(self.con, statement, options=self.scope)
        finally:
            self.con.unregister(name)

    def rollback(self) -> None:
        """Drops the pending documents and clusters (the source failed or its transaction rolled back)."""
        self._reset_pending()

    def forget(self, source_sha256: str) -> None:
        """Deletes a source's index and cluster rows (before re-processing it; inside the caller's transaction)."""
        for name in ("staging/del_near_dup_bands", "staging/del_near_dup_docs", "staging/del_near_duplicates"):
            sql.execute(self.con, name, options=self.scope, sha256=source_sha256)
