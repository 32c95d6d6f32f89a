//! Runtime plumbing shared by every pipeline process: layered settings, telemetry, the one
//! Postgres pool and one Redis pool per process, shutdown on SIGTERM/SIGINT, the probe
//! server (`/health`, `/ready`, `/metrics`), and the catalogue of metrics it exports.

pub mod metrics;
pub mod net;
pub mod pools;
pub mod probes;
pub mod render;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use settings::{Settings, SettingsError, Sources};

/// Installs the process's TLS crypto provider (ring). Two compiled-in providers make TLS
/// clients panic at first use, so every binary calls this once at start-up.
pub fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
