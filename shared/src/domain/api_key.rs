use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A bearer API key as handed to the customer once. Only its [`ApiKeyHash`] is ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

/// Hex SHA-256 of an API key: what the table stores and what a request is looked up by.
///
/// A plain (unsalted) hash is right here: keys carry 256 random bits, so there is nothing to
/// brute-force, and the lookup must be a single GetItem by the hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(String);

impl ApiKey {
    pub const PREFIX: &'static str = "rtk_";

    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(format!("{}{}", Self::PREFIX, URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Any presented string is hashed as is; a wrong key simply matches nothing.
    pub fn presented(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The clear value, for the one moment it is shown to the operator.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl ApiKeyHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_and_hash_stably() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert!(a.reveal().starts_with(ApiKey::PREFIX));
        assert_eq!(a.hash(), ApiKey::presented(a.reveal()).hash());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash().as_str().len(), 64);
        assert!(!format!("{a:?}").contains(a.reveal()));
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            ApiKey::presented("abc").hash().as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
