//! `hubsync serve`: opens the store, imports groups, starts the scheduler and
//! the HTTP(S) API, and shuts all down cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{ApiState, router};
use crate::runner::Runner;
use crate::scheduler::{Scheduler, Wake};
use crate::secrets::SecretKey;
use crate::spec::{GroupSpec, MemberSpec};
use crate::store::{MetaStore, PutOutcome, StoreError};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

/// How long requests in flight may take to finish at shutdown.
const HTTP_GRACE: Duration = Duration::from_secs(10);

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

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The metadata store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A group from the config could not be imported.
    #[error("importing sync group `{group}` from the config failed: {source}")]
    Import {
        /// The group.
        group: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}. Is another process using the port? Choose another with --listen")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read the TLS {what} file {path}: {source}. Check --tls-{what}")]
    TlsRead {
        /// `cert` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS files could not be used.
    #[error(
        "cannot use the TLS certificate {cert} with the key {key}: {source}. Give a PEM certificate chain with --tls-cert and its PEM private key (PKCS#8, PKCS#1 or SEC1) with --tls-key"
    )]
    TlsConfig {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed while running.
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    /// A task of the server ended abnormally.
    #[error("a server task ended abnormally: {0}")]
    Task(String),
}

/// Starts `hubsync serve`.
#[derive(Debug)]
pub struct Server {
    _private: (),
}

/// A started server: its address, and how to stop it.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    owner: String,
    handle: axum_server::Handle<SocketAddr>,
    http: JoinHandle<std::io::Result<()>>,
    stop_scheduler: watch::Sender<bool>,
    scheduler: JoinHandle<()>,
}

impl Server {
    /// Opens the store, imports `opts.import`, starts the scheduler and
    /// serves the API on `opts.listen` (port 0 picks a free port: see
    /// [`RunningServer::local_addr`]). Logs one line when ready.
    pub async fn start(opts: ServeOptions) -> Result<RunningServer, ServeError> {
        let metrics = crate::metrics::install();
        // Read before anything starts, so bad files fail the start at once.
        let tls = match &opts.tls {
            Some(files) => Some(load_tls(files).await?),
            None => None,
        };
        let store = MetaStore::open(&opts.metadata_url, opts.secret_key.clone()).await?;
        import(&store, &opts.import).await?;
        let listener = std::net::TcpListener::bind(opts.listen)
            .map_err(|source| ServeError::Bind { addr: opts.listen, source })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: opts.listen, source })?;

        let owner = owner_id();
        let wake = Wake::default();
        let runner = Runner::new(store.clone(), opts.base_dir.clone(), opts.parallel_members);
        let scheduler = Scheduler::new(store.clone(), runner.clone(), owner.clone(), wake.clone());
        let (stop_scheduler, stopped) = watch::channel(false);
        let scheduler = tokio::spawn(scheduler.run(stopped));

        let state = ApiState { store, wake, base_dir: opts.base_dir.clone(), metrics };
        // The portal sits beside the API: its pages sign in with the same tokens.
        let app = router(state.clone()).merge(crate::portal::router(state, runner)).into_make_service();
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp(listener).map_err(|source| ServeError::Bind { addr, source })?;
        let http = match tls {
            Some(config) => {
                let server =
                    server.acceptor(axum_server::tls_rustls::RustlsAcceptor::new(config)).handle(handle.clone());
                tokio::spawn(server.serve(app))
            }
            None => tokio::spawn(server.handle(handle.clone()).serve(app)),
        };
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %addr, scheme, owner = %owner, "hubsync serve is ready.");
        Ok(RunningServer { addr, owner, handle, http, stop_scheduler, scheduler })
    }
}

impl RunningServer {
    /// The address the server listens on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The owner name this server takes group leases as.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Stops gracefully: stops accepting connections (requests in flight get
    /// a grace period), stops taking sync work, lets running syncs stop after
    /// their batch in flight, releases leases, and returns.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        tracing::info!(address = %self.addr, "Shutting down.");
        self.handle.graceful_shutdown(Some(HTTP_GRACE));
        let _ = self.stop_scheduler.send(true);
        let (http, scheduler) = tokio::join!(self.http, self.scheduler);
        scheduler.map_err(|e| ServeError::Task(format!("the scheduler: {e}")))?;
        let served = http.map_err(|e| ServeError::Task(format!("the HTTP server: {e}")))?;
        served.map_err(ServeError::Http)?;
        tracing::info!("hubsync serve stopped.");
        Ok(())
    }

    /// Serves until Ctrl-C or SIGTERM (see [`shutdown_signal`]), then shuts
    /// down gracefully. Returns early with an error when the HTTP server fails.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` resolves, then shuts down gracefully. Returns
    /// early with an error when the HTTP server fails.
    pub async fn run_until(mut self, signal: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
        tokio::select! {
            () = signal => self.shutdown().await,
            ended = &mut self.http => {
                // The server stopped by itself: stop the scheduler too.
                let _ = self.stop_scheduler.send(true);
                let _ = self.scheduler.await;
                match ended {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(ServeError::Http(e)),
                    Err(e) => Err(ServeError::Task(format!("the HTTP server: {e}"))),
                }
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "Cannot listen for Ctrl-C.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received."),
        () = term => tracing::info!("SIGTERM received."),
    }
}

/// Imports the config's groups: new ones are created, changed ones updated,
/// equal ones left alone. Members only in the store (added over the API)
/// are kept. Returns each group's outcome: `created`, `updated` or `unchanged`.
async fn import(
    store: &MetaStore,
    groups: &[(GroupSpec, Vec<MemberSpec>)],
) -> Result<Vec<(String, &'static str)>, ServeError> {
    let mut outcomes = Vec::with_capacity(groups.len());
    for (group, members) in groups {
        let failed = |source| ServeError::Import { group: group.name.clone(), source };
        let group_outcome = store.put_group(group).await.map_err(failed)?;
        let mut members_changed = 0usize;
        for member in members {
            match store.put_member(member).await.map_err(failed)? {
                PutOutcome::Unchanged => {}
                PutOutcome::Created | PutOutcome::Updated => members_changed += 1,
            }
        }
        let outcome = match (group_outcome, members_changed) {
            (PutOutcome::Created, _) => "created",
            (PutOutcome::Updated, _) | (PutOutcome::Unchanged, 1..) => "updated",
            (PutOutcome::Unchanged, 0) => "unchanged",
        };
        tracing::info!(group = %group.name, outcome, members = members.len(), members_changed, "Sync group imported from the config.");
        outcomes.push((group.name.clone(), outcome));
    }
    Ok(outcomes)
}

/// Reads the TLS files, with errors that name the file at fault.
async fn load_tls(files: &TlsFiles) -> Result<RustlsConfig, ServeError> {
    let read = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        async move {
            tokio::fs::read(&path).await.map_err(|source| ServeError::TlsRead {
                what,
                path: path.display().to_string(),
                source,
            })
        }
    };
    let cert = read("cert", &files.cert).await?;
    let key = read("key", &files.key).await?;
    RustlsConfig::from_pem(cert, key).await.map_err(|source| ServeError::TlsConfig {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        source,
    })
}

/// A lease owner name unique to this process: `hostname-pid-uuid`. The uuid
/// keeps a restarted process that got the same pid from taking over its
/// predecessor's leases before they expire.
fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    format!("{host}-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_are_unique_and_name_the_process() {
        let (a, b) = (owner_id(), owner_id());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }

    #[tokio::test]
    async fn importing_twice_leaves_equal_groups_alone_and_updates_changed_ones() {
        use crate::model::DatabaseType;
        use crate::spec::{DatabaseSpec, Schedule};
        use hubsync_core::{ConflictPolicy, Direction};

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        let store = MetaStore::open(&url, None).await.unwrap();
        let db = |name: &str| DatabaseSpec {
            database_type: DatabaseType::Sqlite,
            server_name: String::new(),
            database_name: dir.path().join(name).display().to_string(),
            user_name: String::new(),
            password: None,
        };
        let group = GroupSpec {
            name: "g".into(),
            hub: db("hub.db"),
            policy: ConflictPolicy::HubWin,
            schedule: Schedule::EverySeconds(60),
            batch_rows: 100,
            tables: vec![],
            conflict_logging: false,
            conflict_retention_days: 30,
        };
        let member = MemberSpec {
            group: "g".into(),
            name: "m".into(),
            database: db("m.db"),
            direction: Direction::Bidirectional,
        };
        let config = vec![(group.clone(), vec![member.clone()])];
        assert_eq!(import(&store, &config).await.unwrap(), [("g".to_string(), "created")]);
        assert_eq!(import(&store, &config).await.unwrap(), [("g".to_string(), "unchanged")]);
        let changed_member = MemberSpec { direction: Direction::OneWayHubToMember, ..member.clone() };
        let config = vec![(group.clone(), vec![changed_member])];
        assert_eq!(import(&store, &config).await.unwrap(), [("g".to_string(), "updated")]);
        let changed_group = GroupSpec { schedule: Schedule::Manual, ..group };
        let config = vec![(changed_group, vec![])];
        assert_eq!(import(&store, &config).await.unwrap(), [("g".to_string(), "updated")]);
        // A member the config does not name (added over the API) is kept.
        assert!(store.get_member("g", "m").await.unwrap().is_some());
        assert_eq!(store.get_group("g").await.unwrap().unwrap().spec.schedule, Schedule::Manual);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_started_server_serves_the_api_runs_a_triggered_sync_and_shuts_down_cleanly() {
        use crate::model::{DatabaseType, SyncGroupState};
        use crate::spec::{DatabaseSpec, Schedule, TableSpec};
        use hubsync_core::{ConflictPolicy, Direction, TableName};

        let dir = tempfile::tempdir().unwrap();
        let hub_path = dir.path().join("hub.db");
        let hub = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", hub_path.display())).await.unwrap();
        sqlx::query("create table items (id integer primary key, v text)").execute(&hub).await.unwrap();
        sqlx::query("insert into items values (1, 'one'), (2, 'two')").execute(&hub).await.unwrap();
        let db = |path: &Path| DatabaseSpec {
            database_type: DatabaseType::Sqlite,
            server_name: String::new(),
            database_name: path.display().to_string(),
            user_name: String::new(),
            password: None,
        };
        let group = GroupSpec {
            name: "served".into(),
            hub: db(&hub_path),
            policy: ConflictPolicy::HubWin,
            schedule: Schedule::Manual,
            batch_rows: 100,
            tables: vec![TableSpec { name: TableName::new("items"), columns: None, policy: None }],
            conflict_logging: false,
            conflict_retention_days: 30,
        };
        let member = MemberSpec {
            group: "served".into(),
            name: "m1".into(),
            database: db(&dir.path().join("m1.db")),
            direction: Direction::Bidirectional,
        };
        let opts = ServeOptions { import: vec![(group, vec![member])], ..options(dir.path()) };
        let metadata_url = opts.metadata_url.clone();
        let server = Server::start(opts).await.unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let store = MetaStore::open(&metadata_url, None).await.unwrap();
        let token = store.create_token("test", false).await.unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://{addr}");
        assert!(http.get(format!("{base}/healthz")).send().await.unwrap().status().is_success());
        let trigger =
            http.post(format!("{base}/v1/syncGroups/served/triggerSync")).bearer_auth(&token).send().await.unwrap();
        assert!(trigger.status().is_success(), "{}", trigger.status());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while store.get_group("served").await.unwrap().unwrap().status.state != SyncGroupState::Good {
            assert!(std::time::Instant::now() < deadline, "the triggered sync did not end Good");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let metrics = http.get(format!("{base}/metrics")).bearer_auth(&token).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        assert!(text.contains(r#"hubsync_syncs_succeeded_total{group="served",member="m1"} 1"#), "{text}");
        server.shutdown().await.unwrap();
        assert!(http.get(format!("{base}/healthz")).send().await.is_err(), "the server still answers after shutdown");
        assert_eq!(store.runs("served", 10).await.unwrap().len(), 1);
    }

    /// A self-signed certificate for 127.0.0.1 and its key, made for this
    /// test only (`openssl req -x509 -newkey ec ... -days 36500`).
    const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmTCCAT6gAwIBAgIUad1dbgwhgIKC4n3/cCAfoZrFCEowCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMTE4NDQxMloYDzIxMjYxMTA3
MTg0NDEyWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAS2qh5MNJouFrf8Y5CPThdqSAwHDiwmXgoFVOjjWPwfVxu3BpwhTFpw
E/mHyLIk8a5NVGdJ4p4YPorhzyh+3iY2o2wwajAdBgNVHQ4EFgQUXuvr0q6sg7i1
VNrKdU5G67z3Dr4wHwYDVR0jBBgwFoAUXuvr0q6sg7i1VNrKdU5G67z3Dr4wGgYD
VR0RBBMwEYcEfwAAAYIJbG9jYWxob3N0MAwGA1UdEwEB/wQCMAAwCgYIKoZIzj0E
AwIDSQAwRgIhANSGZroWyvSFIYEMW003mNVAtXZwpxyi42mnshaRqadiAiEAwb6f
j9D9Tmc8orkzufNpN2VCJDgZXfg+JzvXHeSsC2w=
-----END CERTIFICATE-----
";
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg15wadr5cMlFPj0CA
8QsO0/dWvN5rarUgefXM/Q4l87ChRANCAAS2qh5MNJouFrf8Y5CPThdqSAwHDiwm
XgoFVOjjWPwfVxu3BpwhTFpwE/mHyLIk8a5NVGdJ4p4YPorhzyh+3iY2
-----END PRIVATE KEY-----
";

    /// Options for a server on a free port with a SQLite store in `dir`.
    fn options(dir: &Path) -> ServeOptions {
        ServeOptions {
            metadata_url: format!("sqlite://{}", dir.join("meta.db").display()),
            listen: "127.0.0.1:0".parse().unwrap(),
            base_dir: dir.to_path_buf(),
            secret_key: None,
            tls: None,
            import: vec![],
            parallel_members: 2,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_tls_files_the_server_speaks_https_only() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, TEST_CERT).unwrap();
        std::fs::write(&key, TEST_KEY).unwrap();
        let server =
            Server::start(ServeOptions { tls: Some(TlsFiles { cert, key }), ..options(dir.path()) }).await.unwrap();
        let addr = server.local_addr();
        // The certificate is self-signed: only the transport is under test.
        let https = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        let answer = https.get(format!("https://{addr}/healthz")).send().await.unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
        let plain = reqwest::Client::new().get(format!("http://{addr}/healthz")).send().await;
        assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP must not be served");
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn unreadable_tls_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let missing = TlsFiles { cert: cert.clone(), key: dir.path().join("missing-key.pem") };
        let err = load_tls(&missing).await.unwrap_err().to_string();
        assert!(err.contains("TLS key file") && err.contains("missing-key.pem") && err.contains("--tls-key"), "{err}");
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "not a key").unwrap();
        let bad = TlsFiles { cert, key };
        let err = load_tls(&bad).await.unwrap_err().to_string();
        assert!(err.contains("cert.pem") && err.contains("PEM"), "{err}");
    }
}
