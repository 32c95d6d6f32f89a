"""Dumps what each page of a corpus declares about itself, as read by extruct (an
independent reader of JSON-LD, microdata, RDFa and OpenGraph), for the markup_eval example.

Usage: extruct_declared.py <corpus dir> > declared.json

Pages: <dir>/*/source.html (the readability corpus) or <dir>/html/*.html (the article
extraction benchmark). Output: {"<page id>": {"headline": [...], "author": [...],
"datePublished": [...], "publisher": [...], "inLanguage": [...], "og": {"og:title": [...]}}}
where each list holds every value the page declares for that property, from any syntax.
`<html lang>` and `<meta name=author|description|...>` are read too (with lxml, which
extruct uses), since the article template reads them.
"""

import json
import os
import sys

import extruct
import lxml.html

ARTICLE_TYPES = {
    "Article", "NewsArticle", "BlogPosting", "Report", "ScholarlyArticle", "TechArticle",
    "ReportageNewsArticle", "AnalysisNewsArticle", "OpinionNewsArticle", "LiveBlogPosting",
    "SocialMediaPosting", "WebPage",
}
PROPS = ["headline", "author", "datePublished", "publisher", "inLanguage"]


def local(t):
    return str(t).rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1].rsplit(":", 1)[-1]


def names(v):
    """Strings a property value stands for: itself, or a nested item's name."""
    out = []
    if isinstance(v, list):
        for x in v:
            out += names(x)
    elif isinstance(v, dict):
        for k in ("name", "@value", "properties"):
            if k in v:
                out += names(v[k] if k != "properties" else v[k].get("name"))
                break
    elif isinstance(v, (str, int, float)) and str(v).strip():
        out.append(str(v).strip())
    return out


def items(data):
    """Every typed item with its properties, from JSON-LD (graphs flattened, nesting
    walked), microdata and RDFa."""
    out = []

    def walk_ld(v, depth=0):
        if depth > 16:
            return
        if isinstance(v, list):
            for x in v:
                walk_ld(x, depth + 1)
        elif isinstance(v, dict):
            if "@graph" in v:
                walk_ld(v["@graph"], depth + 1)
            t = v.get("@type")
            types = [local(x) for x in (t if isinstance(t, list) else [t]) if x]
            if types:
                out.append((types, v))
            for k, x in v.items():
                if k != "@graph":
                    walk_ld(x, depth + 1)

    walk_ld(data.get("json-ld", []))

    def walk_md(v):
        if isinstance(v, list):
            for x in v:
                walk_md(x)
        elif isinstance(v, dict) and "properties" in v:
            t = v.get("type")
            types = [local(x) for x in (t if isinstance(t, list) else [t]) if x]
            out.append((types, v["properties"]))
            for x in v["properties"].values():
                walk_md(x)

    walk_md(data.get("microdata", []))
    for node in data.get("rdfa", []):
        types = [local(t) for t in node.get("@type", [])]
        props = {}
        for k, vals in node.items():
            if k.startswith("@"):
                continue
            props[local(k)] = [x.get("@value", x.get("@id")) for x in vals if isinstance(x, dict)]
        out.append((types, props))
    return out


def by_id(data):
    ids = {}

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            if "@id" in v and len(v) > 1:
                ids[v["@id"]] = v
            for x in v.values():
                walk(x)

    walk(data.get("json-ld", []))
    return ids


def declared(html):
    data = extruct.extract(
        html, syntaxes=["json-ld", "microdata", "rdfa", "opengraph"], uniform=False, errors="ignore"
    )
    ids = by_id(data)

    def deref(v):
        if isinstance(v, list):
            return [deref(x) for x in v]
        if isinstance(v, dict) and set(v) == {"@id"} and v["@id"] in ids:
            return ids[v["@id"]]
        return v

    out = {p: [] for p in PROPS}
    for types, props in items(data):
        if not ARTICLE_TYPES.intersection(types):
            continue
        for p in PROPS:
            for s in names(deref(props.get(p))):
                if s not in out[p]:
                    out[p].append(s)
    og = {}
    for block in data.get("opengraph", []):
        for k, v in block.get("properties", []):
            og.setdefault(k, []).append(v)
    out["og"] = og
    meta = {}
    try:
        doc = lxml.html.fromstring(html)
        lang = doc.get("lang") or doc.get("{http://www.w3.org/XML/1998/namespace}lang")
        if lang:
            meta["html_lang"] = [lang.strip()]
        for m in doc.iter("meta"):
            key = (m.get("name") or "").strip().lower()
            if key and m.get("content"):
                meta.setdefault(key, []).append(m.get("content").strip())
    except Exception:  # a page lxml cannot read declares nothing here
        pass
    out["meta"] = meta
    return out


def pages(root):
    html_dir = os.path.join(root, "html")
    if os.path.isdir(html_dir):
        for name in sorted(os.listdir(html_dir)):
            if name.endswith(".html"):
                yield name[: -len(".html")], os.path.join(html_dir, name)
    else:
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name, "source.html")
            if os.path.isfile(path):
                yield name, path


def main():
    root = sys.argv[1]
    result = {}
    for page_id, path in pages(root):
        with open(path, encoding="utf-8", errors="replace") as f:
            html = f.read()
        try:
            result[page_id] = declared(html)
        except Exception as e:  # report and go on: one broken page must not stop the run
            print(f"{page_id}: {e}", file=sys.stderr)
    json.dump(result, sys.stdout, ensure_ascii=False, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
