//! `hubsync token create|list` and `hubsync secret-key`: the credentials of
//! the service, made on the server's machine (they open the metadata store
//! directly, so they need no token to make the first one).

use std::process::ExitCode;
use std::time::SystemTime;

use hubsync_server::{MetaStore, SecretKey};
use serde_json::json;

use super::client::output::{OutputFormat, print_json, print_table};
use super::serve::StoreArgs;
use crate::report::{TextTable, human_time};

/// `hubsync token`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TokenAction,
}

/// What `hubsync token` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenAction {
    /// Create an API token and print it (the only time it is shown: the
    /// store keeps only its hash).
    Create {
        /// A name saying who or what uses the token.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The token may read but not change anything.
        #[arg(long)]
        read_only: bool,
        /// Where the metadata store is.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the tokens (names and access, never the secrets).
    List {
        /// Where the metadata store is.
        #[command(flatten)]
        store: StoreArgs,
        /// How to print them.
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

/// Runs `hubsync token`.
pub async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        TokenAction::Create { name, read_only, store } => {
            if name.trim().is_empty() {
                anyhow::bail!("--name is empty; name the token after who or what will use it (`--name ci`)");
            }
            // Tokens need no secret key: only their hashes are stored.
            let store = MetaStore::open(&store.url(), None).await?;
            let token = store.create_token(&name, read_only).await?;
            let access = if read_only { "read-only" } else { "read-write" };
            eprintln!(
                "Created the {access} API token `{name}`. It is shown only this once and cannot be shown again: \
                 keep it now (for example in HUBSYNC_TOKEN)."
            );
            say!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        TokenAction::List { store, output } => {
            let store = MetaStore::open(&store.url(), None).await?;
            let tokens = store.list_tokens().await?;
            if output == OutputFormat::Json {
                let list: Vec<_> = tokens
                    .iter()
                    .map(|t| json!({"id": t.id, "name": t.name, "readOnly": t.read_only, "createdAt": t.created_at}))
                    .collect();
                print_json(&json!({ "value": list }));
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = TextTable::new(&["ID", "NAME", "ACCESS", "CREATED"]);
            let now = SystemTime::now();
            for t in &tokens {
                table.row(vec![
                    t.id.to_string(),
                    t.name.clone(),
                    if t.read_only { "read-only" } else { "read-write" }.into(),
                    human_time(t.created_at, now),
                ]);
            }
            print_table(&table, tokens.len(), "No API tokens yet: create one with `hubsync token create --name NAME`.");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `hubsync secret-key`.
pub fn secret_key() -> anyhow::Result<ExitCode> {
    let key = SecretKey::generate();
    say!("{key}");
    eprintln!(
        "This key encrypts the database passwords hubsync stores. Keep it secret and keep it: stored passwords \
         cannot be read without it. Start the server with HUBSYNC_SECRET_KEY=<key> hubsync serve ..., or write it \
         to a file only the server can read (chmod 600) and pass --secret-key-file FILE."
    );
    Ok(ExitCode::SUCCESS)
}
