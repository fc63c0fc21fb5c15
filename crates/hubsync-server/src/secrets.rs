//! Database passwords encrypted at rest, and API token secrets.
//!
//! Passwords are sealed with XChaCha20-Poly1305 under a 32-byte key from
//! `HUBSYNC_SECRET_KEY` or a key file; a random nonce per value. Tokens are
//! random and stored as their SHA-256 only.

use std::path::Path;

/// The environment variable holding the secret key.
pub const SECRET_KEY_ENV: &str = "HUBSYNC_SECRET_KEY";

/// Why a secret key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The key text is not 32 bytes in base64 or hex.
    #[error(
        "the secret key from {source_name} is not 32 bytes written in base64 (44 characters) or hex (64 characters); generate one with `hubsync secret-key`"
    )]
    BadKey {
        /// Where it came from (`HUBSYNC_SECRET_KEY`, the file's path).
        source_name: String,
    },
    /// The key file could not be read.
    #[error("cannot read the secret key file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        error: std::io::Error,
    },
    /// A sealed value could not be opened.
    #[error("cannot decrypt a stored secret: {0}")]
    Open(String),
}

/// The key that seals database passwords. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretKey {
    _bytes: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// Parses a key written in base64 or hex.
    pub fn parse(text: &str, source_name: &str) -> Result<SecretKey, SecretError> {
        let _ = (text, source_name);
        todo!()
    }

    /// Reads the key from a file (surrounding white space ignored).
    pub fn from_file(path: &Path) -> Result<SecretKey, SecretError> {
        let _ = path;
        todo!()
    }

    /// The key from `--secret-key-file` when given, else `HUBSYNC_SECRET_KEY`,
    /// else `None`.
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Option<SecretKey>, SecretError> {
        let _ = file;
        todo!()
    }

    /// A new random key, in base64, for `hubsync secret-key`.
    pub fn generate() -> String {
        todo!()
    }

    /// Seals a value: `v1:` followed by base64 of nonce and ciphertext.
    pub fn seal(&self, plain: &str) -> String {
        let _ = plain;
        todo!()
    }

    /// Opens a value sealed by [`SecretKey::seal`].
    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let _ = sealed;
        todo!()
    }
}

/// A new API token secret (`hs_` and 43 characters of base64url).
pub fn new_token() -> String {
    todo!()
}

/// The hex SHA-256 of a token secret, as stored.
pub fn token_hash(secret: &str) -> String {
    let _ = secret;
    todo!()
}
