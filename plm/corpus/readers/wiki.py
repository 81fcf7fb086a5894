"""MediaWiki XML dumps: article pages, streamed page by page, markup stripped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from plm.config import CorpusSpec
from plm.corpus.readers.records import QUARANTINE_RAW_BYTES, RawRecord
from plm.corpus.readers.streams import Limits, open_binary

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_mediawiki(path: Path, cfg: CorpusSpec) -> Iterator[RawRecord]:
    """Article pages (`<ns>0</ns>`, not redirects) of a MediaWiki XML dump, markup stripped.

    Streams with iterparse and clears each page once read, so memory stays bounded by one page.
    `position` is the page's index among all pages of the dump (skipped ones included).
    """
    position = 0
    root = None
    with open_binary(path, Limits.of(cfg)) as f:
        try:
            for event, elem in ET.iterparse(f, events=("start", "end")):
                if root is None:
                    root = elem
                if event != "end" or _local(elem.tag) != "page":
                    continue
                ns, title, text, redirect = None, None, None, False
                for child in elem.iter():
                    name = _local(child.tag)
                    if name == "ns":
                        ns = (child.text or "").strip()
                    elif name == "title" and title is None:
                        title = child.text
                    elif name == "redirect":
                        redirect = True
                    elif name == "text":
                        text = child.text or ""
                root.clear()  # drop finished pages (and this one) from the tree
                if ns == "0" and not redirect and text is not None:
                    if len(text) * 4 > cfg.max_record_bytes and len(text.encode()) > cfg.max_record_bytes:
                        yield RawRecord(position, title, text.encode()[:QUARANTINE_RAW_BYTES], "too_large")
                    elif not text.lstrip().lower().startswith("#redirect"):
                        yield RawRecord(position, title, wiki_plaintext(text))
                position += 1
        except ET.ParseError as exc:
            yield RawRecord(position, None, str(exc).encode(), "invalid_xml")


_NON_TEXT_LINK = re.compile(r"^\s*(category|file|image|media|[a-z]{2,3}(-[a-z]+)?)\s*:", re.IGNORECASE)


def wiki_plaintext(wikitext: str) -> str:
    """Readable text of a page: markup stripped, plus what strip_code would leave as noise
    (footnotes, category / file / interlanguage links) removed from the top level first."""
    import mwparserfromhell
    from mwparserfromhell.nodes import Tag, Wikilink

    code = mwparserfromhell.parse(wikitext)
    noise = [
        node for node in code.nodes
        if (isinstance(node, Tag) and str(node.tag).strip().lower() == "ref")
        or (isinstance(node, Wikilink) and _NON_TEXT_LINK.match(str(node.title)))
    ]
    for node in noise:
        code.remove(node, recursive=False)
    return code.strip_code()
