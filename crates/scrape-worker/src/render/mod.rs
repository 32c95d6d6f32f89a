//! Rendering pages in headless Chromium: a bounded pool of browser processes, every request
//! they make passed through the fetcher's address guard, and the settled DOM handed to the
//! same extraction as a fetched page.

pub mod decide;
pub mod pool;
pub mod process;
pub mod proxy;
