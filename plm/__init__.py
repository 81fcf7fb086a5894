"""plm: raw text to pretrained and fine-tuned language models, one pipeline spec at a time."""

__version__ = "0.1.0"
