//! Whether a fetched page needs a browser: the `auto` render decision.
//!
//! [`render_need`] looks at the static HTML a server sent and says whether its content is
//! built by JavaScript (render it in a headless browser) or already there (extract it as
//! it is), and why ([`RenderReason`]). It runs on every HTML page of every `auto` job, so it
//! does not build a DOM: one linear scan of the markup ([`render_signals`] shows what it
//! measures) that stops as soon as the page has shown more text than an application shell
//! has, which real article pages do well before their end.
//!
//! A page is rendered only when its static HTML has (almost) no text of its own (see
//! [`PROSE_MAX`] and [`CONTENT_MAX`]) **and** it loads scripts that are not analytics,
//! advertising or consent tags, **and** one of these holds, checked in this order:
//!
//! 1. [`RenderReason::AppRoot`]: an application's mount point is empty (holds at most
//!    [`MOUNT_EMPTY_MAX`] characters besides loading indicators): `#root`, `#app`,
//!    `#__next`, `#__nuxt`, `#___gatsby`, `#svelte`, `<app-root>` and other custom
//!    elements named `*-root` / `*-app`, `<app>`, `[ng-app]`, `[data-sveltekit-*]`, ...
//! 2. [`RenderReason::Noscript`]: a `<noscript>` asks for JavaScript (mentions it, and not
//!    for comments). A `<noscript>` holding only a tracking `<iframe>` or `<img>` has no text
//!    and asks nothing.
//! 3. [`RenderReason::ScriptBuilt`]: at most [`SCRIPT_CONTENT_MAX`] characters of content
//!    text, fewer than [`MEDIA_MAX`] images or videos, and either inline scripts (code and JSON state) of at least [`SCRIPT_BYTES_MIN`] bytes and
//!    [`SCRIPT_RATIO`] times the visible text, or the page's own script files with at most
//!    [`EMPTY_CONTENT_MAX`] characters of content text.
//!
//! Text is counted in characters that are not white space (a CJK character counts once, not
//! as its three bytes), outside `<script>`, `<style>`, `<template>`, `<noscript>`, `<svg>`
//! and form fields. Three measures: all visible text; *content* text, outside
//! `<nav>`, `<header>`, `<footer>`, `<aside>`, buttons and selects (a docs shell's
//! server-rendered sidebar is not content); *prose*, the content text outside links (a
//! listing page's headlines are links, and count as content). Text hidden with CSS counts as
//! visible: the scan errs towards not rendering.
//!
//! The thresholds come from measurement: the README's "Render decision" table gives the
//! smallest prose and content of the real pages of two public extraction corpora (none of
//! which may be rendered), and this crate's fixtures of framework shells (all of which must
//! be).

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use url::Url;

/// Why a page is rendered in a browser; recorded in the job's trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderReason {
    /// An application's mount point (`#root`, `#app`, `#__next`, `<app-root>`, `[ng-app]`,
    /// ...) is empty or holds only a loading indicator, on a page with almost no text that
    /// loads scripts.
    AppRoot,
    /// A `<noscript>` asks to enable JavaScript, on a page with almost no text that loads
    /// scripts.
    Noscript,
    /// The page has almost no text and no media, while its inline scripts are large or its
    /// own script files are all it has.
    ScriptBuilt,
}

impl RenderReason {
    /// Every reason, in the order they are checked.
    pub const ALL: [RenderReason; 3] = [
        RenderReason::AppRoot,
        RenderReason::Noscript,
        RenderReason::ScriptBuilt,
    ];

    /// The reason's name in job trails and metrics: `app_root`, `noscript`, `script_built`.
    pub fn as_str(self) -> &'static str {
        match self {
            RenderReason::AppRoot => "app_root",
            RenderReason::Noscript => "noscript",
            RenderReason::ScriptBuilt => "script_built",
        }
    }
}

impl std::fmt::Display for RenderReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most characters of prose (content text outside links) a page may have and still be
/// rendered. The real pages of the corpora that load scripts have at least 581 (a
/// paywalled teaser whose article body is 301 characters; README, "Render decision"); the
/// shells of the fixtures at most 27 (a shop's promotion line). The margin above the
/// shells is for what real shells render on the server: a cookie notice, a tagline.
pub const PROSE_MAX: usize = 400;

/// Most characters of content text (outside navigation, headers, footers and asides; links
/// included) a page may have and still be rendered: a listing page whose text is all
/// headline links has plenty of it. The real pages of the corpora that load scripts have at
/// least 926.
pub const CONTENT_MAX: usize = 1_000;

/// Most characters of text (besides loading indicators: elements whose class or id says
/// `loading`, `loader`, `spinner`, `skeleton`, `shimmer` or `placeholder`) an application's
/// mount point may hold and still count as empty: a "Loading..." or `{{ message }}` stays
/// under it, a server-rendered application does not.
pub const MOUNT_EMPTY_MAX: usize = 40;

/// Fewer images, videos and frames than this for [`RenderReason::ScriptBuilt`]: a gallery
/// with captions has little text, and is still content.
pub const MEDIA_MAX: usize = 3;

/// Fewest bytes of inline script (code, and JSON state read by code) for
/// [`RenderReason::ScriptBuilt`]; an analytics snippet is a few hundred.
pub const SCRIPT_BYTES_MIN: usize = 8 * 1024;

/// For [`RenderReason::ScriptBuilt`] by inline scripts, they must also be at least this
/// many times the page's visible text (in bytes per character).
pub const SCRIPT_RATIO: usize = 20;

/// Most characters of content text (links included) a page may have for
/// [`RenderReason::ScriptBuilt`], the weakest of the three signals. Large inline scripts
/// are common on real pages (up to 73 times their visible text in the corpora, 860 KB on
/// one page), so it is the text, not the scripts, that tells a shell; the shortest real
/// article body in the corpora is about 300 characters, and a listing page's headline links
/// are content.
pub const SCRIPT_CONTENT_MAX: usize = 200;

/// Most characters of content text a page built by its own script files (and nothing
/// inline) may show: a "Loading..." line, an app's name. A 404 page or a short notice says
/// more.
pub const EMPTY_CONTENT_MAX: usize = 32;

/// Whether the static `html` of the page at `url` needs a browser, and why.
///
/// Cheap: one pass over the markup, no DOM, no allocation besides a few small buffers;
/// the pass stops as soon as the page shows more text than [`PROSE_MAX`] or
/// [`CONTENT_MAX`]. `url` tells the page's own scripts from other sites' (relative, same
/// host, or the same registrable domain, as far as the last labels tell).
pub fn render_need(html: &str, url: &Url) -> Option<RenderReason> {
    scan(html, url, true).reason()
}

/// What the scan measures on a page, read to the end (no early stop): for diagnostics and
/// corpus measurements. [`RenderSignals::reason`] gives the same answer as [`render_need`].
pub fn render_signals(html: &str, url: &Url) -> RenderSignals {
    scan(html, url, false)
}

/// What [`render_signals`] found on a page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RenderSignals {
    /// The scan read the whole page (`false` when it stopped on plenty of text).
    pub complete: bool,
    /// Visible text, in non-space characters.
    pub text_chars: usize,
    /// Visible text outside `<nav>`, `<header>`, `<footer>`, `<aside>`, buttons and selects.
    pub content_chars: usize,
    /// Content text outside links.
    pub prose_chars: usize,
    /// Images (not 1x1 pixels), videos, frames, embeds and objects outside `<noscript>`.
    pub media: usize,
    /// The first empty mount point, as a selector (`#root`, `app-root`, `[ng-app]`).
    pub empty_mount: Option<String>,
    /// A `<noscript>` asks for JavaScript.
    pub noscript_asks_js: bool,
    /// Bytes of inline executable script, analytics snippets left out.
    pub inline_code_bytes: usize,
    /// Bytes of inline JSON read by scripts (`application/json`, not `ld+json`).
    pub inline_data_bytes: usize,
    /// Script files that are not analytics, advertising or consent tags.
    pub script_files: usize,
    /// Of those, the page's own (relative, same site) or ES modules.
    pub own_script_files: usize,
    /// Analytics, advertising and consent tags (files and inline snippets).
    pub tracker_scripts: usize,
}

impl RenderSignals {
    /// The page has (almost) no text of its own.
    pub fn little_text(&self) -> bool {
        self.prose_chars <= PROSE_MAX && self.content_chars <= CONTENT_MAX
    }

    /// The page loads scripts that may build it (anything but trackers).
    pub fn has_app_scripts(&self) -> bool {
        self.script_files > 0 || self.inline_code_bytes > 0
    }

    /// The decision (see the module documentation).
    pub fn reason(&self) -> Option<RenderReason> {
        if !self.complete || !self.little_text() || !self.has_app_scripts() {
            return None;
        }
        if self.empty_mount.is_some() {
            return Some(RenderReason::AppRoot);
        }
        if self.noscript_asks_js {
            return Some(RenderReason::Noscript);
        }
        let inline = self.inline_code_bytes + self.inline_data_bytes;
        let big_inline = inline >= SCRIPT_BYTES_MIN.max(SCRIPT_RATIO * self.text_chars);
        let files_only = self.own_script_files > 0 && self.content_chars <= EMPTY_CONTENT_MAX;
        if self.media < MEDIA_MAX
            && self.content_chars <= SCRIPT_CONTENT_MAX
            && (big_inline || files_only)
        {
            return Some(RenderReason::ScriptBuilt);
        }
        None
    }
}

/// Ids of application mount points (compared without case).
const MOUNT_IDS: &[&str] = &[
    "root",
    "app",
    "__next",
    "__nuxt",
    "___gatsby",
    "svelte",
    "app-root",
    "approot",
    "react-root",
    "reactroot",
    "react-app",
    "vue-app",
    "q-app",
    "main-app",
    "spa-root",
    "elm",
    "ember-app",
    "application",
];

/// Words in a class or id that mark a loading indicator inside a mount point.
const LOADING_WORDS: &[&str] = &[
    "loading",
    "loader",
    "spinner",
    "skeleton",
    "shimmer",
    "placeholder",
];

/// Hosts (or host suffixes) of analytics, advertising, consent and social widgets: their
/// scripts never build a page's content.
const TRACKER_HOSTS: &[&str] = &[
    "googletagmanager.com",
    "google-analytics.com",
    "googlesyndication.com",
    "googleadservices.com",
    "doubleclick.net",
    "googletagservices.com",
    "adservice.google.com",
    "facebook.net",
    "connect.facebook.com",
    "hotjar.com",
    "segment.com",
    "segment.io",
    "scorecardresearch.com",
    "quantserve.com",
    "quantcount.com",
    "chartbeat.com",
    "chartbeat.net",
    "newrelic.com",
    "nr-data.net",
    "optimizely.com",
    "cookielaw.org",
    "onetrust.com",
    "cookiebot.com",
    "consensu.org",
    "usercentrics.eu",
    "trustarc.com",
    "amazon-adsystem.com",
    "adsafeprotected.com",
    "moatads.com",
    "taboola.com",
    "outbrain.com",
    "disqus.com",
    "platform.twitter.com",
    "addthis.com",
    "sharethis.com",
    "clarity.ms",
    "bat.bing.com",
    "snap.licdn.com",
    "analytics.tiktok.com",
    "plausible.io",
    "cloudflareinsights.com",
    "mc.yandex.ru",
    "hm.baidu.com",
    "statcounter.com",
    "criteo.com",
    "criteo.net",
    "pubmatic.com",
    "adnxs.com",
    "rubiconproject.com",
    "parsely.com",
    "parse.ly",
    "krxd.net",
    "omtrdc.net",
    "demdex.net",
    "adobedtm.com",
    "mxpnl.com",
    "mixpanel.com",
    "heapanalytics.com",
    "fullstory.com",
    "intercom.io",
    "intercomcdn.com",
    "zdassets.com",
    "hs-scripts.com",
    "hs-analytics.net",
    "hsforms.net",
    "sentry-cdn.com",
    "browser.sentry-cdn.com",
    "bugsnag.com",
    "recaptcha.net",
    "gstatic.com",
    "cdn.ampproject.org",
];

/// Text in a small inline script that makes it an analytics or advertising snippet.
const TRACKER_SNIPPETS: &[&str] = &[
    "googletagmanager",
    "google-analytics",
    "gtag(",
    "dataLayer",
    "_gaq",
    "fbq(",
    "_paq",
    "hotjar",
    "clarity",
    "adsbygoogle",
    "googletag",
    "__cmp",
    "__tcfapi",
    "NREUM",
    "newrelic",
    "_satellite",
    "chartbeat",
    "_sf_async",
    "comscore",
    "_qevents",
    "quantserve",
    "twq(",
    "snaptr(",
    "ttq.",
    "pintrk",
    "_linkedin",
    "ym(",
    "hm.baidu",
    "optimizely",
    "parsely",
    "plausible",
];

static TRACKER_SNIPPET: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = TRACKER_SNIPPETS.iter().map(|s| regex::escape(s)).collect();
    regex::bytes::Regex::new(&alternatives.join("|")).expect("literal alternatives")
});

/// Inline scripts at least this long are counted as code even when they mention a tracker
/// (an application bundle often carries an analytics call).
const SNIPPET_MAX_BYTES: usize = 4 * 1024;

/// What the scan does with an element, by its (lowercased) name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Element {
    /// No content: `<br>`, `<input>`, ...
    Void,
    /// No content, shown: `<img>`, `<embed>`.
    VoidMedia,
    /// Shown media with content: `<video>`, `<object>`.
    Media,
    /// Text up to its end tag, not shown as prose: `<style>`, `<title>`, `<textarea>`...
    RawText,
    /// `<script>`.
    Script,
    /// `<iframe>` (its content is fallback text).
    Iframe,
    /// Content not shown: `<template>`, `<svg>`, `<math>`.
    Hidden,
    /// `<noscript>`.
    Noscript,
    /// Page chrome: `<nav>`, `<header>`, `<footer>`, `<aside>`.
    Chrome,
    /// Page chrome that does not nest: `<button>`, `<select>`.
    FlatChrome,
    /// `<a>` (does not nest).
    Link,
    /// Anything else.
    Other,
}

fn element(name: &[u8]) -> Element {
    match name {
        b"img" | b"embed" => Element::VoidMedia,
        b"area" | b"base" | b"br" | b"col" | b"hr" | b"input" | b"link" | b"meta" | b"param"
        | b"source" | b"track" | b"wbr" | b"keygen" | b"frame" => Element::Void,
        b"video" | b"object" => Element::Media,
        b"style" | b"title" | b"textarea" | b"xmp" | b"noembed" | b"noframes" => Element::RawText,
        b"script" => Element::Script,
        b"iframe" => Element::Iframe,
        b"template" | b"svg" | b"math" => Element::Hidden,
        b"noscript" => Element::Noscript,
        b"nav" | b"header" | b"footer" | b"aside" => Element::Chrome,
        b"button" | b"select" => Element::FlatChrome,
        b"a" => Element::Link,
        _ => Element::Other,
    }
}

/// A tag name, lowercased; names longer than this are cut (they are compared whole only
/// against shorter known names).
const NAME_LEN: usize = 40;

/// Open regions tracked at once; deeper ones are not tracked (their text counts as prose,
/// which errs towards not rendering).
const MAX_REGIONS: usize = 64;

/// Mount points tracked per page.
const MAX_MOUNTS: usize = 16;

/// Bytes of one `<noscript>`'s text kept for reading.
const NOSCRIPT_TEXT_MAX: usize = 512;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Name {
    buf: [u8; NAME_LEN],
    len: usize,
}

impl Name {
    fn new(raw: &[u8]) -> Self {
        let mut buf = [0u8; NAME_LEN];
        let len = raw.len().min(NAME_LEN);
        for (d, s) in buf.iter_mut().zip(raw) {
            *d = s.to_ascii_lowercase();
        }
        Name { buf, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not shown: `<template>`, `<svg>`, `<math>`.
    Hidden,
    /// `<noscript>`: not shown when scripts run; its text is read.
    Noscript,
    /// Page chrome: navigation, header, footer, aside, buttons, selects.
    Chrome,
    /// `<a>`.
    Link,
    /// An application mount point, by index in the scanner's mounts.
    Mount(usize),
    /// A loading indicator inside a mount point.
    Loading,
}

#[derive(Clone, Copy)]
struct Region {
    name: Name,
    kind: Kind,
    /// Open elements of the same name inside it, itself included.
    depth: u32,
}

/// The attributes of a start tag that the scan reads.
#[derive(Default)]
struct Attrs<'a> {
    id: Option<&'a [u8]>,
    class: Option<&'a [u8]>,
    type_: Option<&'a [u8]>,
    src: Option<&'a [u8]>,
    width: Option<&'a [u8]>,
    height: Option<&'a [u8]>,
    /// `ng-app`, `data-ng-app`, `data-sveltekit-*`, `data-reactroot`.
    mount_attr: Option<&'static str>,
}

struct Scanner<'u> {
    url: &'u Url,
    out: RenderSignals,
    regions: Vec<Region>,
    hidden: u32,
    noscript: u32,
    chrome: u32,
    link: u32,
    loading: u32,
    mounts_open: u32,
    /// Selector and text characters of each mount point seen.
    mounts: Vec<(String, usize)>,
    noscript_text: Vec<u8>,
}

fn scan(html: &str, url: &Url, stop_early: bool) -> RenderSignals {
    let b = html.as_bytes();
    let mut s = Scanner {
        url,
        out: RenderSignals::default(),
        regions: Vec::new(),
        hidden: 0,
        noscript: 0,
        chrome: 0,
        link: 0,
        loading: 0,
        mounts_open: 0,
        mounts: Vec::new(),
        noscript_text: Vec::new(),
    };
    let mut i = 0;
    while i < b.len() {
        // `i` is always just past ASCII markup (or at a `<`), so on a character boundary.
        let lt = html[i..].find('<').map_or(b.len(), |p| i + p);
        s.text(&b[i..lt]);
        if stop_early && !s.out.little_text() {
            return s.out;
        }
        if lt >= b.len() {
            break;
        }
        i = s.markup(html, lt);
    }
    s.finish();
    s.out
}

impl Scanner<'_> {
    /// Reads the markup at `lt` (a `<`); returns where the text after it starts.
    fn markup(&mut self, html: &str, lt: usize) -> usize {
        let b = html.as_bytes();
        let rest = &b[lt + 1..];
        if rest.starts_with(b"!--") {
            return find(b, lt + 4, b"-->").unwrap_or(b.len());
        }
        match rest.first() {
            Some(b'!' | b'?') => return skip_to_gt(b, lt + 1),
            Some(b'/') if rest.get(1).is_some_and(u8::is_ascii_alphabetic) => {
                let (name, after) = tag_name(b, lt + 2);
                self.end_tag(Name::new(name));
                return skip_to_gt(b, after);
            }
            Some(c) if c.is_ascii_alphabetic() => {}
            _ => {
                self.text(b"<");
                return lt + 1;
            }
        }
        let (raw_name, after) = tag_name(b, lt + 1);
        let name = Name::new(raw_name);
        let (attrs, end) = attributes(b, after);
        let el = element(name.as_bytes());
        match el {
            Element::Script | Element::Iframe | Element::RawText => {
                let body_end = find_end_tag(html, end, name.as_bytes()).unwrap_or(b.len());
                match el {
                    Element::Script => self.script(&attrs, &b[end..body_end]),
                    Element::Iframe => self.media(&attrs),
                    _ => {}
                }
                body_end
            }
            Element::Void => end,
            Element::VoidMedia => {
                self.media(&attrs);
                end
            }
            _ => {
                self.start_tag(name, el, &attrs);
                end
            }
        }
    }

    /// A start tag of an element with content.
    fn start_tag(&mut self, name: Name, el: Element, attrs: &Attrs) {
        if el == Element::Media {
            self.media(attrs);
        }
        if self.hidden == 0
            && self.mounts.len() < MAX_MOUNTS
            && let Some(selector) = mount_selector(&name, attrs)
        {
            let index = self.mounts.len();
            self.mounts.push((selector, 0));
            if self.push(name, Kind::Mount(index)) {
                return;
            }
            self.mounts.pop();
        }
        let kind = match el {
            Element::Hidden => Some(Kind::Hidden),
            Element::Noscript => Some(Kind::Noscript),
            Element::Chrome => Some(Kind::Chrome),
            Element::Link | Element::FlatChrome => {
                // These do not nest: a second one closes the first in the tree builder.
                if self.regions.iter().any(|r| r.name == name) {
                    return;
                }
                Some(if el == Element::Link {
                    Kind::Link
                } else {
                    Kind::Chrome
                })
            }
            _ if self.mounts_open > 0 && (is_loading(attrs.class) || is_loading(attrs.id)) => {
                Some(Kind::Loading)
            }
            _ => None,
        };
        if let Some(kind) = kind
            && self.push(name, kind)
        {
            return;
        }
        if let Some(r) = self.regions.iter_mut().rev().find(|r| r.name == name) {
            r.depth += 1;
        }
    }

    fn end_tag(&mut self, name: Name) {
        let Some(at) = self.regions.iter().rposition(|r| r.name == name) else {
            return;
        };
        self.regions[at].depth -= 1;
        if self.regions[at].depth == 0 {
            while self.regions.len() > at {
                self.pop();
            }
        }
    }

    fn push(&mut self, name: Name, kind: Kind) -> bool {
        if self.regions.len() >= MAX_REGIONS {
            return false;
        }
        match kind {
            Kind::Hidden => self.hidden += 1,
            Kind::Noscript => {
                self.hidden += 1;
                self.noscript += 1;
            }
            Kind::Chrome => self.chrome += 1,
            Kind::Link => self.link += 1,
            Kind::Mount(_) => self.mounts_open += 1,
            Kind::Loading => self.loading += 1,
        }
        self.regions.push(Region {
            name,
            kind,
            depth: 1,
        });
        true
    }

    fn pop(&mut self) {
        let Some(r) = self.regions.pop() else { return };
        match r.kind {
            Kind::Hidden => self.hidden -= 1,
            Kind::Noscript => {
                self.hidden -= 1;
                self.noscript -= 1;
                if self.noscript == 0 {
                    self.read_noscript();
                }
            }
            Kind::Chrome => self.chrome -= 1,
            Kind::Link => self.link -= 1,
            Kind::Mount(_) => self.mounts_open -= 1,
            Kind::Loading => self.loading -= 1,
        }
    }

    fn finish(&mut self) {
        while !self.regions.is_empty() {
            self.pop();
        }
        self.out.empty_mount = self
            .mounts
            .iter()
            .find(|(_, chars)| *chars <= MOUNT_EMPTY_MAX)
            .map(|(selector, _)| selector.clone());
        self.out.complete = true;
    }

    fn text(&mut self, t: &[u8]) {
        if self.hidden > 0 {
            if self.noscript > 0 && self.noscript_text.len() < NOSCRIPT_TEXT_MAX {
                let room = NOSCRIPT_TEXT_MAX - self.noscript_text.len();
                self.noscript_text.push(b' ');
                self.noscript_text
                    .extend(t[..t.len().min(room)].iter().map(u8::to_ascii_lowercase));
            }
            return;
        }
        let n = t
            .iter()
            .filter(|&&c| c & 0xC0 != 0x80 && !c.is_ascii_whitespace())
            .count();
        if n == 0 {
            return;
        }
        self.out.text_chars += n;
        if self.chrome == 0 {
            self.out.content_chars += n;
            if self.link == 0 {
                self.out.prose_chars += n;
            }
        }
        if self.mounts_open > 0 && self.loading == 0 {
            for r in &self.regions {
                if let Kind::Mount(m) = r.kind {
                    self.mounts[m].1 += n;
                }
            }
        }
    }

    /// A closed `<noscript>`: does its text ask for JavaScript?
    fn read_noscript(&mut self) {
        let t = std::mem::take(&mut self.noscript_text);
        let has = |w: &[u8]| t.windows(w.len()).any(|x| x == w);
        let mentions_js = has(b"javascript") || has(b"java script") || has(b" js ");
        if mentions_js && !has(b"comment") {
            self.out.noscript_asks_js = true;
        }
    }

    fn media(&mut self, attrs: &Attrs) {
        if self.hidden > 0 {
            return;
        }
        let tiny = |v: Option<&[u8]>| v.is_some_and(|v| matches!(trim(v), b"0" | b"1" | b"1px"));
        if tiny(attrs.width) || tiny(attrs.height) {
            return;
        }
        self.out.media += 1;
    }

    fn script(&mut self, attrs: &Attrs, body: &[u8]) {
        let ty = attrs.type_.map(trim).unwrap_or_default();
        let ty = String::from_utf8_lossy(ty).to_ascii_lowercase();
        let module = ty == "module";
        let code = ty.is_empty()
            || module
            || ty.contains("javascript")
            || ty.contains("ecmascript")
            || ty.contains("babel")
            || ty.contains("jsx");
        let data = !code && ty.contains("json") && !ty.contains("ld+json");
        if let Some(src) = attrs.src.map(trim).filter(|s| !s.is_empty()) {
            if !code {
                return;
            }
            let src = String::from_utf8_lossy(src);
            match self.url.join(&src) {
                Ok(u) if is_tracker_host(u.host_str().unwrap_or("")) => {
                    self.out.tracker_scripts += 1;
                }
                Ok(u) => {
                    self.out.script_files += 1;
                    if module || same_site(self.url, &u) {
                        self.out.own_script_files += 1;
                    }
                }
                Err(_) => {}
            }
            return;
        }
        let body = trim(body);
        if body.is_empty() {
            return;
        }
        if data {
            self.out.inline_data_bytes += body.len();
        } else if code {
            if body.len() < SNIPPET_MAX_BYTES && TRACKER_SNIPPET.is_match(body) {
                self.out.tracker_scripts += 1;
            } else {
                self.out.inline_code_bytes += body.len();
            }
        }
    }
}

/// The mount point an element is, as a selector.
fn mount_selector(name: &Name, attrs: &Attrs) -> Option<String> {
    if let Some(attr) = attrs.mount_attr {
        return Some(format!("[{attr}]"));
    }
    if let Some(id) = attrs.id.map(trim)
        && MOUNT_IDS
            .iter()
            .any(|m| id.eq_ignore_ascii_case(m.as_bytes()))
    {
        return Some(format!("#{}", String::from_utf8_lossy(id)));
    }
    let n = name.as_bytes();
    // `<app>` is Blazor's (and older Angular samples') root.
    let custom =
        n == b"app" || (n.contains(&b'-') && (n.ends_with(b"-root") || n.ends_with(b"-app")));
    custom.then(|| String::from_utf8_lossy(n).into_owned())
}

fn is_loading(v: Option<&[u8]>) -> bool {
    let Some(v) = v else { return false };
    let v = v.to_ascii_lowercase();
    LOADING_WORDS
        .iter()
        .any(|w| v.windows(w.len()).any(|x| x == w.as_bytes()))
}

fn is_tracker_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    TRACKER_HOSTS
        .iter()
        .any(|t| host == *t || host.strip_suffix(t).is_some_and(|rest| rest.ends_with('.')))
}

/// The same site, as far as the last labels tell: the same host, or hosts sharing their
/// last two labels (three when the second-to-last is short, as in `co.uk` or `com.au`).
fn same_site(page: &Url, script: &Url) -> bool {
    let (Some(a), Some(b)) = (page.host_str(), script.host_str()) else {
        return false;
    };
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    fn site(host: &str) -> String {
        let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
        let n = labels.len();
        let keep = if n >= 3 && labels[n - 2].len() <= 3 && labels[n - 1].len() == 2 {
            3
        } else {
            2
        };
        labels[n.saturating_sub(keep)..]
            .join(".")
            .to_ascii_lowercase()
    }
    site(a) == site(b)
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// A tag name from `from`: its bytes and where it ends.
fn tag_name(b: &[u8], from: usize) -> (&[u8], usize) {
    let mut i = from;
    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' && b[i] != b'/' {
        i += 1;
    }
    (&b[from..i], i)
}

/// Just past the next `>` from `from` (or the end).
fn skip_to_gt(b: &[u8], from: usize) -> usize {
    b[from.min(b.len())..]
        .iter()
        .position(|&c| c == b'>')
        .map_or(b.len(), |p| from + p + 1)
}

/// The attributes from just after a tag name to just past its `>`.
fn attributes(b: &[u8], mut i: usize) -> (Attrs<'_>, usize) {
    let mut attrs = Attrs::default();
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            return (attrs, b.len());
        }
        if b[i] == b'>' {
            return (attrs, i + 1);
        }
        let from = i;
        i += 1; // a name has at least one byte (even `=`)
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = &b[from..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value: &[u8] = b"";
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            match b.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let start = i + 1;
                    let end = b[start..]
                        .iter()
                        .position(|&c| c == q)
                        .map_or(b.len(), |p| start + p);
                    value = &b[start..end];
                    i = (end + 1).min(b.len());
                }
                _ => {
                    let start = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                    value = &b[start..i];
                }
            }
        }
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("id") {
            attrs.id = Some(value);
        } else if is("class") {
            attrs.class = Some(value);
        } else if is("type") {
            attrs.type_ = Some(value);
        } else if is("src") {
            attrs.src = Some(value);
        } else if is("width") {
            attrs.width = Some(value);
        } else if is("height") {
            attrs.height = Some(value);
        } else if is("ng-app") || is("data-ng-app") {
            attrs.mount_attr = Some("ng-app");
        } else if is("data-reactroot") {
            attrs.mount_attr = Some("data-reactroot");
        } else if name.len() > 15 && name[..15].eq_ignore_ascii_case(b"data-sveltekit-") {
            attrs.mount_attr = Some("data-sveltekit");
        }
    }
}

/// Just past the first `needle` at or after `from`.
fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p + needle.len())
}

/// The `<` of the first `</name` (any case) at or after `from` (a character boundary).
fn find_end_tag(html: &str, from: usize, name: &[u8]) -> Option<usize> {
    let b = html.as_bytes();
    let mut i = from;
    while i < b.len() {
        let lt = i + html[i..].find('<')?;
        let after = &b[lt + 1..];
        if after.first() == Some(&b'/')
            && after.len() > name.len()
            && after[1..=name.len()].eq_ignore_ascii_case(name)
        {
            return Some(lt);
        }
        i = lt + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(html: &str) -> Option<RenderReason> {
        render_need(html, &Url::parse("https://example.com/page").unwrap())
    }

    #[test]
    fn the_early_stop_gives_the_full_scans_answer() {
        let url = Url::parse("https://example.com/").unwrap();
        let long = format!(
            "<div id=root></div><script src=/a.js></script><p>{}</p>",
            "word ".repeat(500)
        );
        for html in [
            long.as_str(),
            "<div id=app></div><script src=/a.js></script>",
        ] {
            assert_eq!(render_need(html, &url), render_signals(html, &url).reason());
        }
        assert!(!scan(&long, &url, true).complete);
    }

    #[test]
    fn markup_corner_cases_do_not_hide_text() {
        // Text in a comment, a script and a title is not text; `a < b` is.
        let s = render_signals(
            "<title>t</title><!-- <div id=root></div> --><script>var x = '<p>'</script>a < b",
            &Url::parse("https://example.com/").unwrap(),
        );
        assert_eq!(s.text_chars, 3);
        assert_eq!(s.empty_mount, None);
        // Unclosed and repeated anchors close each other, as in the tree builder.
        let s = render_signals(
            "<a href=x>one<a href=y>two</a><p>three</p>",
            &Url::parse("https://example.com/").unwrap(),
        );
        assert_eq!(s.prose_chars, 5);
    }

    #[test]
    fn mount_points_count_only_their_own_text() {
        let s = render_signals(
            "<div id=root><div class=spinner>Loading...</div></div><div><p>after</p></div>",
            &Url::parse("https://example.com/").unwrap(),
        );
        assert_eq!(s.empty_mount.as_deref(), Some("#root"));
        assert_eq!(
            need(
                "<div id=root><div class=x><div>Hello there, this is a server-rendered page with a paragraph.</div></div></div><script src=/a.js></script>"
            ),
            None
        );
    }

    #[test]
    fn reasons_have_stable_names() {
        let names: Vec<_> = RenderReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["app_root", "noscript", "script_built"]);
        assert_eq!(
            serde_json::to_string(&RenderReason::ScriptBuilt).unwrap(),
            "\"script_built\""
        );
    }

    #[test]
    fn the_scan_is_linear_on_unterminated_constructs() {
        for unit in [
            "<a",
            "<!--",
            "<script>",
            "<a b=\"",
            "<!x",
            "<div id=root>",
            "</",
        ] {
            let html = unit.repeat(200_000);
            let t = std::time::Instant::now();
            let _ = render_signals(&html, &Url::parse("https://example.com/").unwrap());
            assert!(t.elapsed().as_secs() < 5, "{unit:?}: {:?}", t.elapsed());
        }
    }
}
