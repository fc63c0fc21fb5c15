//! Database passwords encrypted at rest, and API token secrets.
//!
//! Passwords are sealed with XChaCha20-Poly1305 under a 32-byte key from
//! `HUBSYNC_SECRET_KEY` or a key file; a random nonce per value. Tokens are
//! random and stored as their SHA-256 only.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

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
    bytes: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// The prefix of a sealed value; a later format gets a new one so old values
/// stay readable.
const SEALED_V1: &str = "v1:";

/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;

impl SecretKey {
    /// Parses a key written in base64 or hex.
    pub fn parse(text: &str, source_name: &str) -> Result<SecretKey, SecretError> {
        let text = text.trim();
        let bad = || SecretError::BadKey { source_name: source_name.to_string() };
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(text).ok_or_else(bad)?
        } else {
            STANDARD.decode(text).map_err(|_| bad())?
        };
        let bytes: [u8; 32] = decoded.try_into().map_err(|_| bad())?;
        Ok(SecretKey { bytes })
    }

    /// Reads the key from a file (surrounding white space ignored).
    pub fn from_file(path: &Path) -> Result<SecretKey, SecretError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| SecretError::Read { path: path.display().to_string(), error })?;
        SecretKey::parse(&text, &path.display().to_string())
    }

    /// The key from `--secret-key-file` when given, else `HUBSYNC_SECRET_KEY`,
    /// else `None`.
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Option<SecretKey>, SecretError> {
        if let Some(path) = file {
            return SecretKey::from_file(path).map(Some);
        }
        match std::env::var(SECRET_KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => SecretKey::parse(&text, SECRET_KEY_ENV).map(Some),
            _ => Ok(None),
        }
    }

    /// A new random key, in base64, for `hubsync secret-key`.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        STANDARD.encode(bytes)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }

    /// Seals a value: `v1:` followed by base64 of nonce and ciphertext.
    pub fn seal(&self, plain: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption fails only for plaintexts beyond 256 GiB, which no
        // password in memory can be.
        #[allow(clippy::expect_used)]
        let sealed = self.cipher().encrypt(&nonce, plain.as_bytes()).expect("XChaCha20-Poly1305 seals any short value");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{SEALED_V1}{}", STANDARD.encode(out))
    }

    /// Opens a value sealed by [`SecretKey::seal`].
    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let body = sealed
            .strip_prefix(SEALED_V1)
            .ok_or_else(|| SecretError::Open("the value is not in the `v1:` sealed format".to_string()))?;
        let raw = STANDARD
            .decode(body)
            .map_err(|e| SecretError::Open(format!("the sealed value is not valid base64: {e}")))?;
        if raw.len() < NONCE_LEN {
            return Err(SecretError::Open("the sealed value is too short".to_string()));
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher()
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Open("authentication failed (wrong key or altered value)".to_string()))?;
        String::from_utf8(plain).map_err(|_| SecretError::Open("the decrypted value is not UTF-8".to_string()))
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

/// A new API token secret (`hs_` and 43 characters of base64url).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("hs_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The hex SHA-256 of a token secret, as stored.
pub fn token_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::parse(&SecretKey::generate(), "test").unwrap()
    }

    #[test]
    fn sealed_values_open_to_the_original() {
        let key = key();
        let sealed = key.seal("p@ss wörd");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("p@ss"));
        assert_eq!(key.open(&sealed).unwrap(), "p@ss wörd");
        assert_eq!(key.open(&key.seal("")).unwrap(), "");
    }

    #[test]
    fn sealing_twice_gives_different_texts() {
        let key = key();
        assert_ne!(key.seal("same"), key.seal("same"));
    }

    #[test]
    fn another_key_or_an_altered_value_does_not_open() {
        let sealed = key().seal("secret");
        assert!(matches!(key().open(&sealed), Err(SecretError::Open(_))));
        let key = key();
        let mut raw = STANDARD.decode(&key.seal("secret")[3..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(key.open(&format!("v1:{}", STANDARD.encode(raw))).is_err());
        assert!(key.open("secret").is_err());
        assert!(key.open("v1:!!").is_err());
        assert!(key.open("v1:AAAA").is_err());
    }

    #[test]
    fn keys_parse_from_base64_and_hex_only_when_32_bytes() {
        let b64 = SecretKey::generate();
        assert_eq!(b64.len(), 44);
        let from_b64 = SecretKey::parse(&format!("  {b64}\n"), "env").unwrap();
        let hex: String = STANDARD.decode(&b64).unwrap().iter().map(|b| format!("{b:02X}")).collect();
        let from_hex = SecretKey::parse(&hex, "env").unwrap();
        assert_eq!(from_b64.bytes, from_hex.bytes);
        assert_eq!(from_hex.open(&from_b64.seal("x")).unwrap(), "x");
        let err = SecretKey::parse("c2hvcnQ=", "HUBSYNC_SECRET_KEY").unwrap_err();
        assert!(err.to_string().contains("HUBSYNC_SECRET_KEY"));
        assert!(SecretKey::parse(&"g".repeat(64), "env").is_err());
        assert!(SecretKey::parse("", "env").is_err());
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let b64 = SecretKey::generate();
        let key = SecretKey::parse(&b64, "env").unwrap();
        assert_eq!(format!("{key:?}"), "SecretKey(***)");
        let wrong = format!("{}x", &b64[..43]);
        let err = SecretKey::parse(&wrong, "env").unwrap_err();
        assert!(!err.to_string().contains(&wrong));
        assert!(!format!("{err:?}").contains(&wrong));
    }

    #[test]
    fn the_key_file_is_read_and_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let b64 = SecretKey::generate();
        std::fs::write(&path, format!("{b64}\n")).unwrap();
        let from_file = SecretKey::from_env_or_file(Some(&path)).unwrap().unwrap();
        assert_eq!(from_file.bytes, SecretKey::parse(&b64, "x").unwrap().bytes);
        let missing = dir.path().join("absent");
        assert!(matches!(SecretKey::from_file(&missing), Err(SecretError::Read { .. })));
    }

    #[test]
    fn tokens_are_random_and_hashed_as_hex_sha256() {
        let token = new_token();
        assert!(token.starts_with("hs_"));
        assert_eq!(token.len(), 3 + 43);
        assert_ne!(token, new_token());
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(token_hash(&token).len(), 64);
    }
}
