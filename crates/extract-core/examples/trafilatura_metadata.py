"""Reference metadata for `metadata_eval`: trafilatura's (Python) metadata of every case of a
folder of Mozilla Readability test cases, one JSON object per line.

    python3 -m venv .local/venv-ref
    .local/venv-ref/bin/pip install trafilatura lxml_html_clean
    .local/venv-ref/bin/python crates/extract-core/examples/trafilatura_metadata.py <dir> > ref.jsonl

Fields: case, published (trafilatura gives a date, no time), author, sitename (the URL's
host when the page declares none), language (trafilatura sets it only while filtering for a
target language, with a language detector installed: null here).
"""

import json
import sys
from pathlib import Path

from trafilatura import bare_extraction

URL = "http://fakehost/test/page.html"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: trafilatura_metadata.py <dir>")
    root = Path(sys.argv[1])
    for case in sorted(p for p in root.iterdir() if (p / "source.html").is_file()):
        html = (case / "source.html").read_text(encoding="utf-8")
        doc = bare_extraction(html, url=URL, with_metadata=True)
        get = (lambda k: getattr(doc, k, None)) if doc is not None else (lambda k: None)
        print(
            json.dumps(
                {
                    "case": case.name,
                    "published": get("date"),
                    "author": get("author"),
                    "sitename": get("sitename"),
                    "language": get("language"),
                },
                ensure_ascii=False,
            )
        )


if __name__ == "__main__":
    main()
