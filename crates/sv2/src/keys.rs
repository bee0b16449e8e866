//! The pool's authority key pair: the key that signs each connection's
//! Noise certificate, and whose public half a miner is configured with.
//!
//! Both halves travel as base58check text, as SRI's tools write them: the
//! secret as its 32 bytes, the public key as the version `[1, 0]` and the
//! 32-byte x-only key (sv2-spec §4.7). A key file holds the two on lines of
//! their own, `secret = …` and `public = …` (TOML), and is written 0600.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use bitcoin::base58;
use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey, XOnlyPublicKey};
use thiserror::Error;

/// A key that does not parse.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("not base58check: {0}")]
    Base58(String),
    #[error("a {what} is {expected} bytes, this one has {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("unknown public key version {0} (1 expected)")]
    Version(u16),
    #[error("not a secp256k1 {0}")]
    Curve(&'static str),
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

/// An authority public key (x-only).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthorityPublicKey(pub [u8; 32]);

/// An authority key pair.
#[derive(Clone)]
pub struct AuthorityKeys {
    secret: [u8; 32],
    public: AuthorityPublicKey,
}

impl fmt::Display for AuthorityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 34];
        raw[0] = 1;
        raw[2..].copy_from_slice(&self.0);
        f.write_str(&base58::encode_check(&raw))
    }
}

impl fmt::Debug for AuthorityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorityPublicKey({self})")
    }
}

impl FromStr for AuthorityPublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let raw = base58::decode_check(s.trim()).map_err(|e| KeyError::Base58(e.to_string()))?;
        if raw.len() != 34 {
            return Err(KeyError::Length {
                what: "public key",
                expected: 34,
                got: raw.len(),
            });
        }
        let version = u16::from_le_bytes([raw[0], raw[1]]);
        if version != 1 {
            return Err(KeyError::Version(version));
        }
        let key =
            XOnlyPublicKey::from_slice(&raw[2..]).map_err(|_| KeyError::Curve("public key"))?;
        Ok(AuthorityPublicKey(key.serialize()))
    }
}

impl fmt::Debug for AuthorityKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret, not even in a debug print.
        write!(f, "AuthorityKeys {{ public: {} }}", self.public)
    }
}

impl AuthorityKeys {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> AuthorityKeys {
        use rand::RngCore;
        loop {
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            if let Ok(keys) = AuthorityKeys::from_secret(secret) {
                return keys;
            }
        }
    }

    /// The pair of a 32-byte secret.
    pub fn from_secret(secret: [u8; 32]) -> Result<AuthorityKeys, KeyError> {
        let sk = SecretKey::from_slice(&secret).map_err(|_| KeyError::Curve("secret key"))?;
        let (x, _) = Keypair::from_secret_key(&Secp256k1::signing_only(), &sk).x_only_public_key();
        Ok(AuthorityKeys {
            secret,
            public: AuthorityPublicKey(x.serialize()),
        })
    }

    /// The pair of a base58check secret (SRI's `authority_secret_key`).
    pub fn from_secret_text(text: &str) -> Result<AuthorityKeys, KeyError> {
        let raw = base58::decode_check(text.trim()).map_err(|e| KeyError::Base58(e.to_string()))?;
        let secret: [u8; 32] = raw.as_slice().try_into().map_err(|_| KeyError::Length {
            what: "secret key",
            expected: 32,
            got: raw.len(),
        })?;
        AuthorityKeys::from_secret(secret)
    }

    /// The public half.
    pub fn public(&self) -> AuthorityPublicKey {
        self.public
    }

    /// The secret as base58check text.
    pub fn secret_text(&self) -> String {
        base58::encode_check(&self.secret)
    }

    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The key file's text.
    pub fn to_file_text(&self) -> String {
        format!(
            "# Sluice's Stratum V2 authority key pair. Miners are given the public key;\n\
             # the secret never leaves this file.\n\
             secret = \"{}\"\npublic = \"{}\"\n",
            self.secret_text(),
            self.public
        )
    }

    /// Reads a key file; the public key in it must be the secret's.
    pub fn load(path: &Path) -> Result<AuthorityKeys, KeyError> {
        let err = |message: String| KeyError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            secret: String,
            public: Option<String>,
        }
        let file: File = toml::from_str(&text).map_err(|e| err(e.message().to_owned()))?;
        let keys = AuthorityKeys::from_secret_text(&file.secret)
            .map_err(|e| err(format!("secret: {e}")))?;
        if let Some(public) = file.public {
            let public: AuthorityPublicKey =
                public.parse().map_err(|e| err(format!("public: {e}")))?;
            if public != keys.public {
                return Err(err(format!(
                    "public key {public} is not the secret's ({})",
                    keys.public
                )));
            }
        }
        Ok(keys)
    }

    /// Writes a new key file (refusing to overwrite one), readable by its owner only.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| KeyError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        f.write_all(self.to_file_text().as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SRI's published test vector (`key_utils`): this secret has this public key.
    #[test]
    fn the_public_key_of_sri_s_test_secret_is_sri_s() {
        let keys =
            AuthorityKeys::from_secret_text("zmBEmPhqo3A92FkiLVvyCz6htc3e53ph3ZbD4ASqGaLjwnFLi")
                .unwrap();
        assert_eq!(
            keys.public().to_string(),
            "9bDuixKmZqAJnrmP746n8zU1wyAQRrus7th9dxnkPg6RzQvCnan"
        );
        // And the pair SRI's example configs use.
        let keys =
            AuthorityKeys::from_secret_text("mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n")
                .unwrap();
        assert_eq!(
            keys.public().to_string(),
            "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"
        );
    }

    #[test]
    fn bad_public_keys_are_refused_with_the_reason() {
        // One character swapped: the checksum fails.
        let e = "9bDuixKmZqAJnrmP746n8zU1wyAQRrus7th9dxnkPg6RzQvCnam"
            .parse::<AuthorityPublicKey>()
            .unwrap_err();
        assert!(matches!(e, KeyError::Base58(_)), "{e}");
        // Version 12.
        let e = "2myPhc5vkPzuC5FXNK5tee79WmP7uoLh55SxezoF8iqwF3E3rnPY"
            .parse::<AuthorityPublicKey>()
            .unwrap_err();
        assert!(matches!(e, KeyError::Version(12)), "{e}");
        // A byte short.
        let e = "2wmHTKZkLg2QzXyEXGMBXzKP7JXDUt8yy9SA5hoQwERc92qR6c"
            .parse::<AuthorityPublicKey>()
            .unwrap_err();
        assert!(matches!(e, KeyError::Length { got: 33, .. }), "{e}");
    }

    #[test]
    fn a_generated_pair_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("sv2-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("authority.toml");
        let _ = std::fs::remove_file(&path);
        let keys = AuthorityKeys::generate();
        keys.save_new(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = AuthorityKeys::load(&path).unwrap();
        assert_eq!(again.public(), keys.public());
        assert_eq!(again.secret_text(), keys.secret_text());
        assert!(
            keys.save_new(&path).is_err(),
            "an existing key file is never overwritten"
        );
        assert!(!format!("{keys:?}").contains(&keys.secret_text()));
        // A file whose public key is not the secret's is refused.
        let other = AuthorityKeys::generate();
        let mismatched = format!(
            "secret = \"{}\"\npublic = \"{}\"\n",
            keys.secret_text(),
            other.public()
        );
        std::fs::write(&path, mismatched).unwrap();
        let e = AuthorityKeys::load(&path).unwrap_err().to_string();
        assert!(e.contains("is not the secret's"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
