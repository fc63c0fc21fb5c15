//! `hubsync serve`: the sync service, with groups imported from a config file
//! and managed over the REST API; and where its metadata store is, which
//! `hubsync token` shares.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hubsync_server::runner::DEFAULT_PARALLEL_MEMBERS;
use hubsync_server::serve::{DEFAULT_LISTEN, TlsFiles, shutdown_signal};
use hubsync_server::{SecretKey, ServeOptions, Server};

use crate::config::Config;

/// The metadata store's file name when `--metadata` does not say.
pub const DEFAULT_METADATA_FILE: &str = "hubsync-meta.db";

/// Where the metadata store is: `--metadata`, else `hubsync-meta.db` beside
/// the config file, else in the working directory.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The config file (TOML); its groups are imported at start, and the
    /// metadata store defaults to `hubsync-meta.db` beside it.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The metadata store: `sqlite://path` or `postgres://user@host/db` (for
    /// several servers sharing the work).
    #[arg(long, env = "HUBSYNC_METADATA", value_name = "URL")]
    pub metadata: Option<String>,
}

impl StoreArgs {
    /// The store's URL.
    pub fn url(&self) -> String {
        if let Some(url) = &self.metadata {
            return url.clone();
        }
        let dir = match self.config.as_deref().and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file = dir.join(DEFAULT_METADATA_FILE);
        format!("sqlite://{}", std::path::absolute(&file).unwrap_or(file).display())
    }
}

/// `hubsync serve`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The config file and the metadata store.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The address to listen on (`127.0.0.1:0` picks a free port; the log
    /// line at start says which).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A file holding the key that encrypts stored database passwords
    /// (default: the HUBSYNC_SECRET_KEY environment variable; make one with
    /// `hubsync secret-key`).
    #[arg(long, value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Members of one group synced at the same time.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PARALLEL_MEMBERS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub parallel_members: usize,
}

/// Runs `hubsync serve` until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (import, base_dir) = match &args.store.config {
        Some(path) => {
            let config = Config::load(path)?;
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let base_dir = std::path::absolute(&config.base_dir).unwrap_or_else(|_| config.base_dir.clone());
            (config.to_specs()?, base_dir)
        }
        None => (Vec::new(), std::env::current_dir().context("cannot read the working directory")?),
    };
    let secret_key = SecretKey::from_env_or_file(args.secret_key_file.as_deref())?;
    let metadata_url = args.store.url();
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let groups = import.len();
    let options = ServeOptions {
        metadata_url: metadata_url.clone(),
        listen: args.listen,
        base_dir,
        secret_key,
        tls,
        import,
        parallel_members: args.parallel_members,
    };
    let server = Server::start(options).await?;
    tracing::info!(
        url = %format!("{scheme}://{}", server.local_addr()),
        metadata = %hubsync_engines::redact_url(&metadata_url),
        imported_groups = groups,
        "Serving the hubsync API; stop with Ctrl-C or SIGTERM."
    );
    let signal = async {
        shutdown_signal().await;
        tracing::info!("Shutting down: no new syncs start, and the batches in flight commit first.");
        // A second Ctrl-C means "now": the watermarks are committed with each
        // batch, so quitting mid-batch loses nothing.
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("Quitting at once; the next start resumes from the last committed batch.");
                std::process::exit(130);
            }
        });
    };
    server.run_until(signal).await?;
    Ok(ExitCode::SUCCESS)
}
