//! The `auto` render decision on the fixtures in `fixtures/render/`: application shells shaped
//! like what real frameworks emit (rendered, for the expected reason) and static pages that
//! look a little like them (not rendered).

use std::path::Path;

use extract_core::render_need::{RenderReason, render_need, render_signals};
use url::Url;

/// Every fixture, with the decision it must get.
const CASES: &[(&str, Option<RenderReason>)] = &[
    // Application shells.
    ("cra.html", Some(RenderReason::AppRoot)),
    ("vite-vue.html", Some(RenderReason::AppRoot)),
    ("angular.html", Some(RenderReason::AppRoot)),
    ("next-client.html", Some(RenderReason::AppRoot)),
    ("sveltekit.html", Some(RenderReason::AppRoot)),
    ("webpack-noscript.html", Some(RenderReason::Noscript)),
    ("shop-skeleton.html", Some(RenderReason::ScriptBuilt)),
    ("docs-shell.html", Some(RenderReason::ScriptBuilt)),
    ("flutter.html", Some(RenderReason::ScriptBuilt)),
    // The pages the browser tests serve.
    ("browser-spa.html", Some(RenderReason::AppRoot)),
    ("browser-timer.html", Some(RenderReason::AppRoot)),
    // Static pages.
    ("static-analytics-article.html", None),
    ("static-short-contact.html", None),
    ("static-comments-noscript.html", None),
    ("static-404.html", None),
    ("static-gallery.html", None),
    ("static-news-front.html", None),
    ("next-ssr.html", None),
    ("nuxt-ssr.html", None),
];

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render")
}

fn url() -> Url {
    Url::parse("https://www.example.com/some/page").unwrap()
}

#[test]
fn every_fixture_gets_its_decision() {
    let mut wrong = Vec::new();
    for (file, expected) in CASES {
        let html = std::fs::read_to_string(fixtures().join(file)).unwrap();
        let got = render_need(&html, &url());
        if got != *expected {
            wrong.push(format!(
                "{file}: expected {:?}, got {:?} ({:?})",
                expected.map(RenderReason::as_str),
                got.map(RenderReason::as_str),
                render_signals(&html, &url())
            ));
        }
        // The early stop never changes the answer.
        assert_eq!(got, render_signals(&html, &url()).reason(), "{file}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_fixture_is_listed() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !CASES.iter().any(|(f, _)| *f == name) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "fixtures without a case: {missing:?}");
}

#[test]
fn mount_points_are_named() {
    for (file, mount) in [
        ("cra.html", "#root"),
        ("vite-vue.html", "#app"),
        ("angular.html", "app-root"),
        ("next-client.html", "#__next"),
        ("sveltekit.html", "[data-sveltekit]"),
        ("browser-timer.html", "#root"),
    ] {
        let html = std::fs::read_to_string(fixtures().join(file)).unwrap();
        assert_eq!(
            render_signals(&html, &url()).empty_mount.as_deref(),
            Some(mount),
            "{file}"
        );
    }
}

#[test]
fn the_browser_tests_pages_as_given_are_detected() {
    // The exact markup the browser tests serve, so a change to the fixture files cannot
    // hide a change of decision on them.
    let spa = r#"<!doctype html><html><head><title>SPA</title></head><body><div id="app"></div><script src="/app.js"></script></body></html>"#;
    let timer = r#"<!doctype html><html><head><title>Timer</title></head><body><div id="root"><p class="spinner">Loading…</p></div><script>setTimeout(function(){ /* builds the article */ }, 1000)</script></body></html>"#;
    let local = Url::parse("http://127.0.0.1:8080/").unwrap();
    assert_eq!(render_need(spa, &local), Some(RenderReason::AppRoot));
    assert_eq!(render_need(timer, &local), Some(RenderReason::AppRoot));
}

#[test]
fn small_changes_that_must_not_render() {
    let url = url();
    // A mount point with server-rendered text.
    let ssr = format!(
        "<div id=app><h1>Prices</h1><p>{}</p></div><script type=module src=/a.js></script>",
        "Our plans start at five pounds a month. ".repeat(3)
    );
    assert_eq!(render_need(&ssr, &url), None);
    // An empty mount point, but no scripts besides analytics.
    let no_app = r#"<div id="root"></div><script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>"#;
    assert_eq!(render_need(no_app, &url), None);
    // A noscript that asks for JavaScript for comments only.
    let comments = r#"<p>The meeting on Thursday moves to the small hall; bring a chair if you can.</p><noscript>Please enable JavaScript to view the comments.</noscript><script src="/a.js"></script>"#;
    assert_eq!(render_need(comments, &url), None);
    // Text in a tracking noscript is not a request.
    let pixel = r#"<noscript><img src="https://www.facebook.com/tr?id=1&ev=PageView&noscript=1" width=1 height=1></noscript><script src="/a.js"></script><p>Opening hours: 9 to 5, Monday to Friday, closed on bank holidays.</p>"#;
    assert_eq!(render_need(pixel, &url), None);
    // A mount point inside a noscript is not one.
    let in_noscript = r#"<noscript><div id="root"></div></noscript><p>Opening hours: 9 to 5, Monday to Friday, closed on bank holidays.</p><script src="/a.js"></script>"#;
    assert_eq!(render_need(in_noscript, &url), None);
}

#[test]
fn small_changes_that_must_render() {
    let url = url();
    // `[ng-app]` on the body, with an AngularJS template left unrendered.
    let ng = r#"<body ng-app="shop"><div ng-view>{{ title }}</div><script src="/lib/angular.min.js"></script><script src="/js/shop.js"></script></body>"#;
    assert_eq!(render_need(ng, &url), Some(RenderReason::AppRoot));
    // A custom element root, with the bundle on a CDN of the same site.
    let custom =
        r#"<portal-app></portal-app><script src="https://static.example.com/portal.js"></script>"#;
    assert_eq!(render_need(custom, &url), Some(RenderReason::AppRoot));
    // Blazor WebAssembly's `<app>` root.
    let blazor = r#"<app>Loading...</app><script src="_framework/blazor.webassembly.js"></script>"#;
    assert_eq!(render_need(blazor, &url), Some(RenderReason::AppRoot));
    // A root holding a loading indicator and a server-rendered header outside it.
    let header = r#"<header><nav><a href="/">Home</a><a href="/docs">Docs</a></nav></header><div id="root"><div class="app-loading"><div class="spinner"></div><p class="loading-text">Loading the application, please wait…</p></div></div><script src="/bundle.js"></script>"#;
    assert_eq!(render_need(header, &url), Some(RenderReason::AppRoot));
}
