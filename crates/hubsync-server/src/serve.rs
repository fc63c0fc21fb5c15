//! `hubsync serve`: opens the store, imports groups, starts the scheduler and
//! the HTTP(S) API, and shuts all down cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::secrets::SecretKey;
use crate::spec::{GroupSpec, MemberSpec};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

/// Where `--tls-cert` and `--tls-key` point.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Everything `hubsync serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The metadata store (`sqlite://...` or `postgres://...`).
    pub metadata_url: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Relative SQLite paths are taken relative to this.
    pub base_dir: PathBuf,
    /// Encrypts stored passwords.
    pub secret_key: Option<SecretKey>,
    /// Serve HTTPS with these.
    pub tls: Option<TlsFiles>,
    /// Groups (with their members) to import at start, idempotently.
    pub import: Vec<(GroupSpec, Vec<MemberSpec>)>,
    /// Members of one group synced at the same time.
    pub parallel_members: usize,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    _private: (),
}
