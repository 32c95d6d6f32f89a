//! Language: the tag a page declares, checked for shape, or the language of its main text
//! as whatlang detects it.

/// Longest tag kept (BCP 47 tags in practice are far shorter).
const MAX_TAG_LEN: usize = 35;
/// Characters of main text given to the detector: enough for a reliable guess, bounded.
const DETECT_CHARS: usize = 4000;

/// A declared language tag in its usual form: `en_US` becomes `en-US`; anything that is
/// not shaped like a BCP 47 tag (letters, then `-`-separated alphanumeric subtags) is
/// refused. The first of a comma-separated list is taken (`Content-Language: en, fr`).
pub(crate) fn declared_tag(raw: &str) -> Option<String> {
    let tag = raw.split(',').next()?.trim().replace('_', "-");
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return None;
    }
    let mut parts = tag.split('-');
    let primary = parts.next()?;
    let primary_ok = (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        || primary.eq_ignore_ascii_case("x")
        || primary.eq_ignore_ascii_case("i");
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    (primary_ok && rest_ok).then_some(tag)
}

/// The language of `text`, as an ISO 639-1 code where it has one (ISO 639-3 otherwise),
/// when whatlang is confident.
pub(crate) fn detect(text: &str) -> Option<String> {
    let sample: String = text.chars().take(DETECT_CHARS).collect();
    let info = whatlang::detect(&sample)?;
    if !info.is_reliable() {
        return None;
    }
    let code = info.lang().code();
    Some(iso639_1(code).unwrap_or(code).to_string())
}

/// ISO 639-3 (whatlang's codes) to ISO 639-1, for the languages that have a two-letter code.
fn iso639_1(code: &str) -> Option<&'static str> {
    const MAP: &[(&str, &str)] = &[
        ("afr", "af"),
        ("aka", "ak"),
        ("amh", "am"),
        ("ara", "ar"),
        ("aze", "az"),
        ("bel", "be"),
        ("ben", "bn"),
        ("bul", "bg"),
        ("cat", "ca"),
        ("ces", "cs"),
        ("cmn", "zh"),
        ("cym", "cy"),
        ("dan", "da"),
        ("deu", "de"),
        ("ell", "el"),
        ("eng", "en"),
        ("epo", "eo"),
        ("est", "et"),
        ("fin", "fi"),
        ("fra", "fr"),
        ("guj", "gu"),
        ("heb", "he"),
        ("hin", "hi"),
        ("hrv", "hr"),
        ("hun", "hu"),
        ("hye", "hy"),
        ("ind", "id"),
        ("ita", "it"),
        ("jav", "jv"),
        ("jpn", "ja"),
        ("kan", "kn"),
        ("kat", "ka"),
        ("khm", "km"),
        ("kor", "ko"),
        ("lat", "la"),
        ("lav", "lv"),
        ("lit", "lt"),
        ("mal", "ml"),
        ("mar", "mr"),
        ("mkd", "mk"),
        ("mya", "my"),
        ("nep", "ne"),
        ("nld", "nl"),
        ("nob", "nb"),
        ("ori", "or"),
        ("pan", "pa"),
        ("pes", "fa"),
        ("pol", "pl"),
        ("por", "pt"),
        ("ron", "ro"),
        ("rus", "ru"),
        ("sin", "si"),
        ("slk", "sk"),
        ("slv", "sl"),
        ("sna", "sn"),
        ("spa", "es"),
        ("srp", "sr"),
        ("swe", "sv"),
        ("tam", "ta"),
        ("tel", "te"),
        ("tgl", "tl"),
        ("tha", "th"),
        ("tuk", "tk"),
        ("tur", "tr"),
        ("ukr", "uk"),
        ("urd", "ur"),
        ("uzb", "uz"),
        ("vie", "vi"),
        ("yid", "yi"),
        ("zul", "zu"),
    ];
    MAP.iter()
        .find(|(three, _)| *three == code)
        .map(|(_, two)| *two)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_tags_are_checked_for_shape() {
        assert_eq!(declared_tag(" en_US ").as_deref(), Some("en-US"));
        assert_eq!(declared_tag("pt-BR, en").as_deref(), Some("pt-BR"));
        assert_eq!(declared_tag("zh-Hant-TW").as_deref(), Some("zh-Hant-TW"));
        for bad in [
            "",
            "english please",
            "e",
            "en--US",
            "<script>",
            &"a".repeat(40),
        ] {
            assert_eq!(declared_tag(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn main_text_language_is_detected_when_clear() {
        let de = "Der schnelle braune Fuchs springt über den faulen Hund. Die Stadt hat \
                  heute beschlossen, die Brücke über den Fluss im nächsten Jahr zu erneuern.";
        assert_eq!(detect(de).as_deref(), Some("de"));
        assert_eq!(detect("ok"), None);
    }
}
