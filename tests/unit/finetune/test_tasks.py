import pytest

from plm.config import FinetuneSpec
from plm.finetune.tasks import encode_for_classification, read_labelled, split_by_hash
from plm.tokenizer.train import CLS_ID, SEP_ID


def test_fasttext_with_cp1252_bytes_is_decoded_not_replaced(tmp_path):
    path = tmp_path / "d.txt"
    raw = "__label__pos a fine café film \u2014 truly\n__label__neg dull crème brûlée\nno label here\n".encode("cp1252")
    path.write_bytes(raw)
    data = read_labelled(FinetuneSpec(data=str(path)))
    assert data.labels == ["pos", "neg"] and data.skipped == 1
    assert data.encoding == "cp1252" and "\ufffd" not in data.texts[0]
    # lossless: the decoded text encodes back to exactly the bytes that were read
    assert raw.decode(data.encoding).encode(data.encoding) == raw
    assert data.texts[0].encode(data.encoding) in raw


def test_legacy_bytes_the_sniffer_cannot_confirm_are_quarantined_not_replaced(tmp_path):
    # One em dash is no evidence of CP1252 (the shared sniffer takes a legacy codec only when its text reads
    # as words): the row is quarantined undecodable, and `finetune.encoding` reads it.
    path = tmp_path / "d.txt"
    path.write_bytes("__label__pos a fine film \u2014 truly\n__label__neg dull\n".encode("cp1252"))
    data = read_labelled(FinetuneSpec(data=str(path)))
    assert data.labels == ["neg"] and [(r.position, r.reason) for r in data.quarantine] == [(0, "undecodable:utf-8")]
    assert data.quarantine[0].excerpt == "__label__pos a fine film \\x97 truly"
    forced = read_labelled(FinetuneSpec(data=str(path), encoding="cp1252"))
    assert forced.labels == ["pos", "neg"] and forced.texts[0] == "a fine film \u2014 truly" and forced.skipped == 0


def test_utf8_is_preferred(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("__label__pos 한국어 문장\n")
    data = read_labelled(FinetuneSpec(data=str(path)))
    assert data.texts == ["한국어 문장"] and data.encoding == "utf-8"
    with pytest.raises(ValueError, match="finetune.encoding: unknown codec 'nope'"):
        FinetuneSpec(encoding="nope")


def test_csv_and_jsonl(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("sentence,y\ngood,1\nbad,0\n,1\n")
    data = read_labelled(FinetuneSpec(data=str(csv_path), format="csv", text_column="sentence", label_column="y"))
    assert data.texts == ["good", "bad"] and data.labels == ["1", "0"] and data.skipped == 1
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"text": "great", "label": "pos"}\nnot json\n{"text": "meh"}\n')
    data = read_labelled(FinetuneSpec(data=str(jl), format="jsonl"))
    assert data.texts == ["great"] and data.skipped == 2


def test_empty_or_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="finetune.data"):
        read_labelled(FinetuneSpec(data=str(tmp_path / "missing.txt")))
    empty = tmp_path / "e.txt"
    empty.write_text("nothing labelled\n")
    with pytest.raises(ValueError, match="no labelled rows"):
        read_labelled(FinetuneSpec(data=str(empty)))


def test_finetune_data_is_checked_against_the_corpus_roots_before_it_is_opened(tmp_path):
    from plm.config import PipelineSpec
    from plm.finetune.tasks import data_path

    with pytest.raises(PermissionError, match="finetune.data: /etc/passwd: resolves to .* outside corpus.allowed_roots"):
        read_labelled(FinetuneSpec(data="/etc/passwd"))  # read (and skipped row by row) before
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "d.txt").write_text("__label__pos a fine film\n")
    (tmp_path / "outside.txt").write_text("__label__neg secret\n")
    (allowed / "link.txt").symlink_to(tmp_path / "outside.txt")
    spec = PipelineSpec.model_validate({"corpus": {"allowed_roots": [str(allowed)]},
                                        "finetune": {"data": str(allowed / "d.txt")}})
    assert data_path(spec.finetune) == (allowed / "d.txt").resolve()
    assert read_labelled(spec.finetune).labels == ["pos"]
    escaped = PipelineSpec.model_validate({"corpus": {"allowed_roots": [str(allowed)]},
                                           "finetune": {"data": str(allowed / "link.txt")}})
    with pytest.raises(PermissionError, match="link.txt: resolves to .*outside.txt"):
        data_path(escaped.finetune)  # a symlink is followed before the check
    samples = PipelineSpec.model_validate({"corpus": {"allowed_roots": [str(allowed)]}})
    assert samples.finetune.data.startswith("sample:")
    pytest.importorskip("gensim")
    assert data_path(samples.finetune).is_file()  # named samples stay allowed


def test_split_is_deterministic_and_near_fraction():
    texts = [f"sentence number {i}" for i in range(2000)]
    train, test = split_by_hash(texts, 0.2)
    assert split_by_hash(texts, 0.2) == (train, test)
    assert sorted(train + test) == list(range(2000))
    assert abs(len(test) / 2000 - 0.2) < 0.03
    # a text's side does not depend on the other texts
    assert (0 in test) == (0 in split_by_hash(texts[:10], 0.2)[1])


def test_sample_polarity_loads():
    pytest.importorskip("gensim")
    data = read_labelled(FinetuneSpec())
    assert len(data.texts) == 200 and set(data.labels) == {"neg", "pos"}


def test_encode_for_classification_truncates_with_specials(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "a": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    ids = encode_for_classification(tok, ["a a a a a a a a", "a b"], 5)
    assert ids[0] == [CLS_ID, 5, 5, 5, SEP_ID] and ids[1] == [CLS_ID, 5, 1, SEP_ID]
    assert tok.truncation is None  # the caller's tokenizer is not changed
