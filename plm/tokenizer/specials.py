"""Special tokens per model family, and the ids a trained tokenizer gives them.

Generators read ids from `SpecialIds.from_tokenizer(tok)` rather than from constants, so the same
code serves the BERT family ([PAD] [UNK] [CLS] [SEP] [MASK] = 0..4) and the GPT family
(<|endoftext|> <pad> <unk> <mask> = 0..3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tokenizers import Tokenizer

Family = Literal["bert", "gpt"]

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GPT_SPECIALS = ["<|endoftext|>", "<pad>", "<unk>", "<mask>"]
EOS_TOKEN = "<|endoftext|>"

# role -> token; a role the family lacks is absent (its id is None).
_ROLES: dict[str, dict[str, str]] = {
    "bert": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "gpt": {"pad": "<pad>", "unk": "<unk>", "mask": "<mask>", "bos": EOS_TOKEN, "eos": EOS_TOKEN},
}


def special_tokens(family: Family) -> list[str]:
    """The family's special tokens, in id order (they are the first ids of the vocabulary)."""
    return list(BERT_SPECIALS if family == "bert" else GPT_SPECIALS)


def family_of(tok: Tokenizer) -> Family:
    """`bert` when the tokenizer has [CLS], else `gpt`."""
    return "bert" if tok.token_to_id("[CLS]") is not None else "gpt"


def hf_tokenizer_kwargs(family: Family) -> dict[str, str]:
    """Special-token keyword arguments for `transformers.PreTrainedTokenizerFast(tokenizer_file=..., **kw)`."""
    roles = _ROLES[family]
    return {f"{role}_token": token for role, token in roles.items()}


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens of one tokenizer; None where its family has no such role."""

    pad: int | None = None
    unk: int | None = None
    cls: int | None = None
    sep: int | None = None
    mask: int | None = None
    bos: int | None = None
    eos: int | None = None
    all: frozenset[int] = field(default_factory=frozenset)
    """Every special (added) token id, including ones without a role."""
    n_leading: int = 0
    """Special ids occupy 0..n_leading-1, so `range(n_leading, vocab_size)` are ordinary tokens."""

    @classmethod
    def from_tokenizer(cls, tok: Tokenizer) -> SpecialIds:
        """Read the role ids and the set of special ids from a trained tokenizer."""
        roles = {role: tok.token_to_id(token) for role, token in _ROLES[family_of(tok)].items()}
        special = frozenset(i for i, t in tok.get_added_tokens_decoder().items() if t.special)
        n_leading = 0
        while n_leading in special:
            n_leading += 1
        return cls(**roles, all=special, n_leading=n_leading)
