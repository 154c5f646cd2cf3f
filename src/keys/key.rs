//! Guest public keys: parsed and checked with the ssh-key crate.

use ssh_key::{Algorithm, HashAlg, PublicKey, public::KeyData};

/// Smallest RSA modulus accepted (NIST: 2048 bits is the floor until 2030).
pub const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKey {
    /// `TYPE BASE64`, no comment: what goes into authorized_keys.
    pub openssh: String,
    pub algorithm: String,
    pub fingerprint: String,
}

/// Parses one OpenSSH public key line (`type base64 [comment]`).
pub fn parse(line: &str) -> Result<GuestKey, String> {
    let line = line.trim();
    if line.contains(['\n', '\r', '\0']) {
        return Err("a key must be a single line".into());
    }
    let key =
        PublicKey::from_openssh(line).map_err(|e| format!("not an OpenSSH public key ({e})"))?;
    match key.key_data() {
        KeyData::Dsa(_) => {
            return Err("DSA keys are refused: they are broken and OpenSSH disabled them".into());
        }
        KeyData::Rsa(rsa) => {
            let bytes = rsa.n.as_positive_bytes().map(<[u8]>::len).unwrap_or(0);
            let bits = bytes * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key of {bits} bits is too short (at least {MIN_RSA_BITS})"
                ));
            }
        }
        _ => {}
    }
    let algorithm = key.algorithm();
    if matches!(algorithm, Algorithm::Other(_)) {
        return Err(format!("unsupported key type {}", algorithm.as_str()));
    }
    let mut bare = key.clone();
    bare.set_comment("");
    let openssh = bare
        .to_openssh()
        .map_err(|e| format!("cannot encode key: {e}"))?;
    Ok(GuestKey {
        openssh: openssh.trim().to_string(),
        algorithm: algorithm.as_str().to_string(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    })
}

/// Parses a file or an HTTP body of keys, one per line; blank lines and
/// comments are skipped. Every key must be valid.
pub fn parse_many(text: &str) -> Result<Vec<GuestKey>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        out.push(parse(t).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = include_str!("../../tests/data/keys/ed25519.pub");

    #[test]
    fn ed25519_keys_parse_with_fingerprint_and_without_comment() {
        let k = parse(ED).unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert!(k.fingerprint.starts_with("SHA256:"), "{}", k.fingerprint);
        assert!(!k.openssh.contains("bob@laptop"));
        assert!(parse(include_str!("../../tests/data/keys/rsa3072.pub")).is_ok());
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert!(
            parse("ssh-ed25519 AAAA")
                .unwrap_err()
                .starts_with("not an OpenSSH public key")
        );
        assert!(parse("hello").is_err());
        assert!(
            parse(&format!("{}\nssh-ed25519 x", ED.trim()))
                .unwrap_err()
                .contains("single line")
        );
        let e = parse(include_str!("../../tests/data/keys/rsa1024.pub")).unwrap_err();
        assert_eq!(e, "RSA key of 1024 bits is too short (at least 2048)");
        let e = parse(include_str!("../../tests/data/keys/dsa.pub")).unwrap_err();
        assert!(
            e.starts_with("DSA keys are refused") || e.starts_with("not an OpenSSH"),
            "{e}"
        );
    }
}
