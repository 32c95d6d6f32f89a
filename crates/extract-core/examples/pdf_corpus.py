"""Builds a corpus of PDFs from texts whose words are known, for `pdf_eval`.

    python3 crates/extract-core/examples/pdf_corpus.py <article-extraction dir> <out dir>

Reads `ground-truth.json` of an Article Extraction Benchmark folder (`{id: {articleBody}}`)
and writes, per article, the PDFs below and `<name>.txt`, the exact text typeset in
`<name>.pdf` (characters the font cannot draw are left out of both), so recovered text can be
scored against it:

- `<id>-1col.pdf`: one column, embedded TrueType font (subset, with a ToUnicode map, as most
  PDFs made by office suites and browsers are), a heading, justified paragraphs;
- `<id>-2col.pdf`: the same text in two columns per page (the reading-order test: a reader
  that follows the page line by line across both columns mixes them);
- `<id>-words.pdf`: one column where every word is drawn on its own at its position and no
  space character is written (as TeX and many typesetters do): the test of a reader's word
  breaks;
- `<id>-kern.pdf`: one column in Helvetica where each line is one `TJ` array whose words are
  separated by kerning offsets instead of spaces (as pdfTeX writes justified text); only for
  articles whose text Windows-1252 can encode;
- `<id>-core.pdf`: one column in Helvetica, a standard font that is not embedded (WinAnsi
  encoding, no ToUnicode map); only for articles whose text
  Windows-1252 can encode.

Every PDF carries an Info dictionary (Title, Author, CreationDate) so metadata can be checked.

The script makes its own virtual environment under `.local/pdf-corpus-venv` (at the
repository's root) and installs `reportlab` there from PyPI on its first run. The font is
DejaVu Sans when the system has it (`fonts-dejavu-core`; Latin, Greek, Cyrillic), else the
Bitstream Vera that ships with reportlab (Latin only); articles whose letters the font lacks
(more than 2 %: Korean, Japanese, Chinese, Arabic pages) are skipped and counted.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".local" / "pdf-corpus-venv"
DEJAVU = [
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
]
AUTHOR = "Article Extraction Benchmark"


def ensure_venv() -> None:
    """Re-runs this script inside the project-local venv, creating it first if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "reportlab>=4,<6"], check=True
        )
    os.execv(str(python), [str(python), *sys.argv])


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: pdf_corpus.py <article-extraction dir> <out dir>")
    ensure_venv()

    from reportlab.lib.enums import TA_JUSTIFY
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import cm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph
    from xml.sax.saxutils import escape
    import reportlab

    font_path = next((p for p in DEJAVU if p.exists()), None)
    if font_path is None:
        font_path = Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"
    ttf = TTFont("Body", str(font_path))
    pdfmetrics.registerFont(ttf)
    covered = set(ttf.face.charToGlyph.keys())

    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    truth = json.loads((src / "ground-truth.json").read_text(encoding="utf-8"))

    def styles(font: str):
        body = ParagraphStyle(
            "body", fontName=font, fontSize=10, leading=13, alignment=TA_JUSTIFY,
            spaceAfter=6,
        )
        head = ParagraphStyle("head", fontName=font, fontSize=16, leading=20, spaceAfter=10)
        return head, body

    def build(path: Path, title: str, paragraphs: list[str], font: str, columns: int):
        doc = BaseDocTemplate(
            str(path), pagesize=A4, title=title, author=AUTHOR,
            leftMargin=2 * cm, rightMargin=2 * cm, topMargin=2 * cm, bottomMargin=2 * cm,
        )
        gap = 0.8 * cm
        width = (doc.width - gap * (columns - 1)) / columns
        frames = [
            Frame(doc.leftMargin + i * (width + gap), doc.bottomMargin, width, doc.height,
                  id=f"col{i}")
            for i in range(columns)
        ]
        doc.addPageTemplates([PageTemplate(id="page", frames=frames)])
        head, body = styles(font)
        story = [Paragraph(escape(title), head)]
        story += [Paragraph(escape(p), body) for p in paragraphs]
        doc.build(story)

    def build_words(path: Path, title: str, paragraphs: list[str]):
        from reportlab.lib.utils import simpleSplit
        from reportlab.pdfgen.canvas import Canvas

        c = Canvas(str(path), pagesize=A4)
        c.setTitle(title)
        c.setAuthor(AUTHOR)
        left, top, width = 2 * cm, A4[1] - 2 * cm, A4[0] - 4 * cm
        y = top

        def line(words: list[str], size: float, leading: float):
            nonlocal y
            if y < 2 * cm + leading:
                c.showPage()
                y = top
            c.setFont("Body", size)
            x = left
            for w in words:
                c.drawString(x, y, w)
                x += pdfmetrics.stringWidth(w + " ", "Body", size)
            y -= leading

        for text, size, leading in [(title, 16, 20)] + [(p, 10, 13) for p in paragraphs]:
            for wrapped in simpleSplit(text, "Body", size, width):
                line(wrapped.split(), size, leading)
            y -= 6
        c.save()

    def build_kern(path: Path, title: str, paragraphs: list[str]):
        from reportlab.lib.utils import simpleSplit
        from reportlab.pdfgen.canvas import Canvas

        def pdf_string(word: str) -> str:
            raw = word.encode("cp1252")
            out = "".join(
                "\\" + c if c in "()\\" else c if 32 <= ord(c) < 127 else f"\\{ord(c):03o}"
                for c in raw.decode("latin-1")
            )
            return f"({out})"

        c = Canvas(str(path), pagesize=A4)
        c.setTitle(title)
        c.setAuthor(AUTHOR)
        left, top, width = 2 * cm, A4[1] - 2 * cm, A4[0] - 4 * cm
        y = top
        for text, size, leading in [(title, 16, 20)] + [(p, 10, 13) for p in paragraphs]:
            for wrapped in simpleSplit(text, "Helvetica", size, width):
                if y < 2 * cm + leading:
                    c.showPage()
                    y = top
                t = c.beginText(left, y)
                t.setFont("Helvetica", size)
                # A space of Helvetica is 278/1000 em: the same gap, written as a kerning offset.
                parts = " -278 ".join(pdf_string(w) for w in wrapped.split())
                t._code.append(f"[{parts}] TJ")
                c.drawText(t)
                y -= leading
            y -= 6
        c.save()

    written = skipped = 0
    for art_id, item in sorted(truth.items()):
        text = item["articleBody"]
        letters = [c for c in text if c.isalpha()]
        missing = [c for c in letters if ord(c) not in covered]
        if letters and len(missing) / len(letters) > 0.02:
            skipped += 1
            continue
        kept = "".join(c for c in text if c in "\n" or ord(c) in covered)
        paragraphs = [" ".join(p.split()) for p in kept.split("\n")]
        paragraphs = [p for p in paragraphs if p]
        if not paragraphs:
            skipped += 1
            continue
        title = f"Article {art_id[:12]}"
        known = "\n\n".join([title, *paragraphs])
        variants = [("1col", "Body", 1), ("2col", "Body", 2)]
        if known.encode("cp1252", errors="replace").decode("cp1252") == known:
            variants.append(("core", "Helvetica", 1))
            variants.append(("kern", "kern", 1))
        variants.append(("words", None, 1))
        for name, font, columns in variants:
            stem = f"{art_id}-{name}"
            if font is None:
                build_words(out / f"{stem}.pdf", title, paragraphs)
            elif font == "kern":
                build_kern(out / f"{stem}.pdf", title, paragraphs)
            else:
                build(out / f"{stem}.pdf", title, paragraphs, font, columns)
            (out / f"{stem}.txt").write_text(known, encoding="utf-8")
            written += 1
    print(f"{written} PDFs written to {out}; {skipped} articles skipped (font lacks their letters)")


if __name__ == "__main__":
    main()
