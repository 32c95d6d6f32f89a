//! Title of a page. Mozilla Readability's choice is the reference users know (reader views
//! show it), and dom_smoothie reproduces it: JSON-LD `headline`/`name`, then `og:title`
//! and friends, then the `<title>` cleaned of a site-name suffix. The other candidates here
//! are fallbacks for when Readability gives up on a page.

use dom_query::Document;

/// Title candidates read from a parsed page before any extractor mutates it.
#[derive(Debug, Default)]
pub(crate) struct TitleCandidates {
    pub og_title: Option<String>,
    pub title_tag: Option<String>,
    pub h1: Option<String>,
}

impl TitleCandidates {
    pub(crate) fn from_document(doc: &Document) -> Self {
        let meta = |sel: &str| {
            doc.select(sel)
                .nodes()
                .iter()
                .find_map(|n| n.attr("content").map(|c| normalize(&c)))
                .filter(|s| !s.is_empty())
        };
        let text = |sel: &str| {
            doc.select(sel)
                .nodes()
                .first()
                .map(|n| normalize(&n.text()))
                .filter(|s| !s.is_empty())
        };
        Self {
            og_title: meta(r#"meta[property="og:title"], meta[name="og:title"]"#)
                .or_else(|| meta(r#"meta[name="twitter:title"], meta[property="twitter:title"]"#)),
            title_tag: text("head title").or_else(|| text("title")),
            h1: text("h1"),
        }
    }

    /// The best title: Readability's when it has one, else the page's own declarations.
    pub(crate) fn choose(&self, readability: Option<&str>) -> Option<String> {
        readability
            .map(tidy)
            .filter(|s| !s.is_empty())
            .or_else(|| self.og_title.clone())
            .or_else(|| self.title_tag.as_deref().map(strip_site_suffix))
            .or_else(|| self.h1.clone())
    }
}

/// Trims, and turns line breaks and tabs into spaces, but keeps the title's own spacing
/// (double spaces, ideographic spaces): Readability keeps it, and the title is shown as is.
fn tidy(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Collapses whitespace runs and trims.
pub(crate) fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Drops a trailing " | Site Name" (or " - ", " — ", " · ") when what remains is still a
/// title of a few words.
pub(crate) fn strip_site_suffix(title: &str) -> String {
    const SEPARATORS: &[&str] = &[" | ", " - ", " – ", " — ", " · ", " :: ", " » "];
    let title = normalize(title);
    let cut = SEPARATORS.iter().filter_map(|sep| title.rfind(sep)).max();
    match cut {
        Some(i) if title[..i].split_whitespace().count() >= 3 => title[..i].trim().to_string(),
        _ => title,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_suffix_is_dropped_only_when_a_real_title_remains() {
        assert_eq!(
            strip_site_suffix("Floods close the lower town | Daily News"),
            "Floods close the lower town"
        );
        assert_eq!(strip_site_suffix("Home | Daily News"), "Home | Daily News");
    }

    #[test]
    fn readability_title_first_then_declared_ones() {
        let doc = super::super::parse_guarded(
            r#"<html><head><title>A page title here | Site</title>
            <meta property="og:title" content=" The  OG title "></head><body><h1>H</h1></body></html>"#,
            &crate::Limits::default(),
        )
        .unwrap();
        let c = TitleCandidates::from_document(&doc);
        assert_eq!(
            c.choose(Some("From readability")).as_deref(),
            Some("From readability")
        );
        assert_eq!(c.choose(None).as_deref(), Some("The OG title"));
        let bare = TitleCandidates {
            title_tag: Some("A page title here | Site".into()),
            ..Default::default()
        };
        assert_eq!(
            bare.choose(Some("  ")).as_deref(),
            Some("A page title here")
        );
    }
}
