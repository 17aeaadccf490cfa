//! Enrollment tokens: `fl1.ID.SECRET.CA_SHA256`.
//!
//! The ID finds the token row, the SECRET (128 random bits) proves
//! possession — the relay stores only its SHA-256 — and the CA fingerprint
//! lets the agent pin the relay on first contact, as `kubeadm join` does.

use std::fmt;

const PREFIX: &str = "fl1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
    pub ca_fingerprint: String,
}

impl Token {
    /// A new random token for the CA with this fingerprint.
    pub fn generate(ca_fingerprint: &str) -> Token {
        Token {
            id: hex::encode(rand::random::<[u8; 4]>()),
            secret: hex::encode(rand::random::<[u8; 16]>()),
            ca_fingerprint: ca_fingerprint.to_string(),
        }
    }

    /// What the relay stores instead of the secret.
    pub fn secret_sha256(&self) -> String {
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            self.secret.as_bytes(),
        ))
    }

    pub fn parse(text: &str) -> Result<Token, String> {
        let bad = || {
            "malformed enrollment token: expected `fl1.ID.SECRET.FINGERPRINT` as printed by \
             `firstline-relay token create`"
                .to_string()
        };
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [prefix, id, secret, fp] = parts[..] else {
            return Err(bad());
        };
        let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if prefix != PREFIX || !hex_of(id, 8) || !hex_of(secret, 32) || !hex_of(fp, 64) {
            return Err(bad());
        }
        Ok(Token {
            id: id.into(),
            secret: secret.into(),
            ca_fingerprint: fp.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            self.id, self.secret, self.ca_fingerprint
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = Token::generate(&"ab".repeat(32));
        assert_eq!(Token::parse(&t.to_string()).unwrap(), t);
        assert_eq!(t.secret_sha256().len(), 64);
        assert_ne!(t.secret_sha256(), t.secret);
    }

    #[test]
    fn malformed() {
        for s in [
            "",
            "fl1.x.y.z",
            "fl2.00000000.00000000000000000000000000000000.00",
            "garbage",
        ] {
            assert!(Token::parse(s).unwrap_err().contains("malformed"), "{s}");
        }
    }
}
