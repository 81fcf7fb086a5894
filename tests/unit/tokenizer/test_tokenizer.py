import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plm.config import TokenizerSpec
from plm.tokenizer.encode import encode_documents
from plm.tokenizer.train import CLS_ID, SEP_ID, SPECIAL_TOKENS, evaluate_tokenizer, iter_sentences, load_tokenizer, train_tokenizer

EN = ["The quick brown fox jumps over the lazy dog.", "A language model learns from raw text.", "Tokenizers split words into pieces."]
KO = ["대한민국은 민주공화국이다.", "모든 국민은 법 앞에 평등하다.", "국회는 법률을 제정한다."]


@pytest.fixture
def lake(tmp_path):
    rows = []
    for i in range(60):
        sents = [EN[i % 3], KO[i % 3], EN[(i + 1) % 3]]
        rows.append({"doc_id": f"d{i:03d}", "sentences": sents, "split": "validation" if i % 10 == 0 else "train"})
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return [path]


def test_iter_sentences_filters_split(lake):
    train = [s for b in iter_sentences(lake, "train") for s in b]
    val = [s for b in iter_sentences(lake, "validation") for s in b]
    assert len(train) == 54 * 3 and len(val) == 6 * 3


def test_train_save_load_roundtrip_keeps_hangul(lake, tmp_path):
    out = tmp_path / "tok" / "tokenizer.json"
    tok = train_tokenizer(TokenizerSpec(vocab_size=300, min_frequency=1, lowercase=True), lake, out)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(5))
    loaded = load_tokenizer(out)
    enc = loaded.encode("대한민국은 민주공화국이다.")
    assert enc.ids[0] == CLS_ID and enc.ids[-1] == SEP_ID
    decoded = loaded.decode(enc.ids)
    assert "대한민국" in decoded.replace(" ", "")  # Hangul survives lowercasing (no accent stripping / NFD)
    assert loaded.encode("The QUICK fox").tokens[1:3] == ["the", "quick"]
    pair = loaded.encode("a b", "c")
    assert pair.type_ids[-1] == 1 and pair.type_ids[0] == 0


def test_evaluate_reports_fertility_and_unk(lake, tmp_path):
    tok = train_tokenizer(TokenizerSpec(vocab_size=300, min_frequency=1), lake, tmp_path / "t.json")
    stats = evaluate_tokenizer(tok, lake, "validation")
    assert stats["fertility"] >= 1.0 and 0 <= stats["unk_rate"] < 0.05 and stats["bytes_per_token"] > 1


def test_encode_documents_keeps_boundaries(lake, tmp_path):
    tok = train_tokenizer(TokenizerSpec(vocab_size=300, min_frequency=1), lake, tmp_path / "t.json")
    docs = encode_documents(tok, lake, "train")
    assert len(docs) == 54 and all(len(d.sentences) == 3 for d in docs)
    assert docs[0].sentences[0].dtype.name == "int32"
    assert CLS_ID not in docs[0].sentences[0]


def test_empty_train_split_is_a_clear_error(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"doc_id": "a", "sentences": ["x"], "split": "validation"}]), path)
    with pytest.raises(ValueError, match="no vocabulary"):
        train_tokenizer(TokenizerSpec(), [path], tmp_path / "t.json")
