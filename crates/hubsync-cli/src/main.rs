//! `hubsync`: sync SQL databases hub-and-spoke, from a TOML config file or as
//! a service (`hubsync serve`) managed over its REST API.
//!
//! This file only parses the command line, sets up logging and Ctrl-C, and
//! dispatches; each command lives in `commands/`.

/// `println!` that ignores a closed stdout (`hubsync status | head`): a report
/// that cannot be shown must not abort the work it reports on (a panic in the
/// middle of `deprovision` would leave a database half cleaned).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod commands;
mod config;
mod progress;
mod report;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use hubsync_core::Cancel;
use tracing_subscriber::EnvFilter;

use crate::commands::Target;

/// Keep databases in sync: one hub, many members, changes tracked by triggers.
#[derive(Debug, Parser)]
#[command(
    name = "hubsync",
    version,
    about = "Keep SQL databases in sync: one hub, many members, changes tracked by triggers."
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG, when set, overrides this.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object a line) for log collectors.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision (if needed) and sync the groups of a config file once; or, with
    /// `trigger` / `cancel`, start or stop a sync on a running server.
    Sync(commands::sync::SyncArgs),
    /// Prepare hub and members for sync (creating missing member tables) without syncing.
    Provision(Target),
    /// Remove every object hubsync created (triggers, tracking tables); your tables and rows stay.
    Deprovision(Target),
    /// Show each member's state, last sync, watermarks and pending changes.
    Status(Target),
    /// Create three SQLite databases, sync them, change them, sync again, and explain what happened.
    Quickstart(commands::quickstart::QuickstartArgs),
    /// Measure sync throughput.
    Bench(bench::BenchOptions),
    /// Run the sync service: groups on their schedules, managed over a REST API.
    Serve(commands::serve::ServeArgs),
    /// Create and list the API tokens of a metadata store.
    Token(commands::token::TokenArgs),
    /// Print a new random secret key for encrypting stored database passwords.
    SecretKey,
    /// Manage a server's sync groups (list, show, apply, delete).
    Group(commands::client::groups::GroupArgs),
    /// Manage the members of a server's sync group (list, add, remove).
    Member(commands::client::members::MemberArgs),
    /// Show a server's log entries of a sync group.
    Logs(commands::client::logs::LogsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole cause chain on one line; config errors are
            // already complete sentences with file and line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let cancel = Cancel::default();
    // Commands that write to databases stop between batches on Ctrl-C; the
    // server has its own shutdown, and API clients just end.
    if matches!(
        &command,
        Command::Sync(commands::sync::SyncArgs { action: None, .. })
            | Command::Provision(_)
            | Command::Deprovision(_)
            | Command::Quickstart(_)
            | Command::Bench(_)
    ) {
        watch_ctrl_c(cancel.clone());
    }
    match command {
        Command::Sync(args) => match args.action {
            None => commands::sync::run(&args.target, &cancel).await,
            Some(action) => commands::client::sync::run(action).await,
        },
        Command::Provision(t) => commands::provision::run(&t).await,
        Command::Deprovision(t) => commands::deprovision::run(&t).await,
        Command::Status(t) => commands::status::run(&t).await,
        Command::Quickstart(args) => commands::quickstart::run(&args, &cancel).await,
        Command::Bench(opts) => bench::run(opts).await.map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => commands::serve::run(args).await,
        Command::Token(args) => commands::token::run(args).await,
        Command::SecretKey => commands::token::secret_key(),
        Command::Group(args) => commands::client::groups::run(args).await,
        Command::Member(args) => commands::client::members::run(args).await,
        Command::Logs(args) => commands::client::logs::run(args).await,
    }
}

/// The first Ctrl-C stops sessions cleanly between batches (everything
/// committed is kept and the next sync resumes); a second one exits at once.
fn watch_ctrl_c(cancel: Cancel) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
            eprintln!("\nStopping after the current batch (press Ctrl-C again to quit at once)…");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}

fn init_logging(verbose: u8, format: LogFormat) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let default = format!("warn,hubsync={level},hubsync_core={level},hubsync_engines={level},hubsync_server={level}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).with_target(verbose > 0).init(),
        // Collectors want every field, the target included, and no colours.
        LogFormat::Json => builder.json().with_ansi(false).with_current_span(false).init(),
    }
}
