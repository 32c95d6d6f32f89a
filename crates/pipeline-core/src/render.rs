//! Whether a page is rendered in a headless browser before extraction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// When the scrape worker renders a page in headless Chromium (`render` on a submit or a
/// crawl; `render.default` for jobs that do not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenderMode {
    /// Never: the HTML the server sent is extracted as it is.
    Never,
    /// When the server's HTML has (almost) no main text but scripts that build it, or asks
    /// for JavaScript (an empty app root, a `<noscript>` notice).
    #[default]
    Auto,
    /// Every HTML page.
    Always,
}

impl RenderMode {
    /// Every mode, in the order the docs list them.
    pub const ALL: [RenderMode; 3] = [RenderMode::Never, RenderMode::Auto, RenderMode::Always];

    /// The mode's name: `never`, `auto` or `always`.
    pub fn as_str(self) -> &'static str {
        match self {
            RenderMode::Never => "never",
            RenderMode::Auto => "auto",
            RenderMode::Always => "always",
        }
    }
}

impl fmt::Display for RenderMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A render mode that is not `never`, `auto` or `always`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("render mode {0:?} is not one of never, auto, always")]
pub struct UnknownRenderMode(pub String);

impl FromStr for RenderMode {
    type Err = UnknownRenderMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RenderMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownRenderMode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_as_their_names() {
        for mode in RenderMode::ALL {
            assert_eq!(mode.as_str().parse::<RenderMode>().unwrap(), mode);
            assert_eq!(
                serde_json::to_string(&mode).unwrap(),
                format!("\"{}\"", mode.as_str())
            );
        }
        assert!("Always".parse::<RenderMode>().is_err());
        assert_eq!(RenderMode::default(), RenderMode::Auto);
    }
}
