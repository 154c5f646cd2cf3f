//! Guest public keys: parsed and checked with the ssh-key crate.

use ssh_key::{Algorithm, HashAlg, PublicKey, public::KeyData};

/// Smallest RSA modulus accepted (NIST: 2048 bits is the floor until 2030).
pub const MIN_RSA_BITS: usize = 2048;

/// Largest RSA modulus accepted: OpenSSH's own limit, so a larger key
/// could never log in.
pub const MAX_RSA_BITS: usize = 16384;

/// The longest key kept (`TYPE BASE64`): a 16384-bit RSA key is about
/// 2.8 KB. A key is written into every invites file and authorized_keys
/// line that names it; one of a megabyte (a forge serves what its user
/// uploaded) would push the host's invites past what every reader takes,
/// and lock all of them out.
pub const MAX_KEY_LEN: usize = 4096;

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
    let first = line.split_whitespace().next().unwrap_or("");
    if !ALGORITHMS.contains(&first) && first != "ssh-dss" && !first.starts_with("sk-") {
        let shown: String = line.chars().take(24).collect();
        return Err(format!(
            "not an OpenSSH public key: expected a line like `ssh-ed25519 AAAAC3Nz… name` (the .pub file), got `{}…`",
            shown.escape_debug()
        ));
    }
    let key =
        PublicKey::from_openssh(line).map_err(|e| {
        format!("not an OpenSSH public key ({e}): it looks cut short; copy the whole line of the .pub file")
    })?;
    match key.key_data() {
        KeyData::Dsa(_) => {
            return Err("DSA keys are refused: they are broken and OpenSSH disabled them".into());
        }
        KeyData::Rsa(rsa) => {
            // The modulus's real length, from its highest set bit.
            let n = rsa.n.as_positive_bytes().unwrap_or(&[]);
            let bits = n
                .first()
                .map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
            // An exponent of 1 makes every padded hash its own signature:
            // anyone who saw the public key logs in with it. Even ones are
            // no RSA key at all.
            let e = rsa.e.as_positive_bytes().unwrap_or(&[]);
            let even = e.last().is_none_or(|low| low & 1 == 0);
            if even || e == [1] {
                return Err(
                    "RSA key with a public exponent no real key has (1, or even): refused; ask for a key made by ssh-keygen".into(),
                );
            }
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key of {bits} bits is too short (at least {MIN_RSA_BITS})"
                ));
            }
            if bits > MAX_RSA_BITS {
                return Err(format!(
                    "RSA key of {bits} bits is too long (at most {MAX_RSA_BITS}, OpenSSH's limit: sshd would never take it)"
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
    if openssh.trim().len() > MAX_KEY_LEN {
        return Err(format!(
            "a {} key of {} bytes is refused (at most {MAX_KEY_LEN}): no key sshd uses is that long",
            algorithm.as_str(),
            openssh.trim().len()
        ));
    }
    Ok(GuestKey {
        openssh: openssh.trim().to_string(),
        algorithm: algorithm.as_str().to_string(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    })
}

/// Parses whatever a host was sent as "my key": OpenSSH public key lines,
/// or an RFC 4716 public key (PuTTY's and SSH.com's export), converted.
/// A private key, a PuTTY private key or a PEM key is refused with what it
/// is and how to get the OpenSSH public key from it.
pub fn parse_text(text: &str) -> Result<Vec<GuestKey>, String> {
    let t = text.trim_start();
    if t.starts_with("-----BEGIN") && t.contains("PRIVATE KEY-----") {
        return Err("this is a PRIVATE key (it must stay with its owner; ask them to delete and replace it if it was sent): give its public half, the .pub file beside it, or what `ssh-keygen -y -f FILE` prints".into());
    }
    if t.starts_with("PuTTY-User-Key-File-") {
        return Err("this is a PuTTY private key (it must stay with its owner): in PuTTYgen copy 'Public key for pasting into OpenSSH authorized_keys file', or run `puttygen FILE -O public-openssh`".into());
    }
    if t.starts_with("-----BEGIN") && t.contains("PUBLIC KEY-----") {
        return Err("this is a PEM public key, not OpenSSH's format: convert it with `ssh-keygen -i -m PKCS8 -f FILE` and give the result".into());
    }
    if t.starts_with("---- BEGIN SSH2 PUBLIC KEY ----") {
        // One file may hold several; each starts with its BEGIN line.
        return t
            .split("---- BEGIN SSH2 PUBLIC KEY ----")
            .filter(|part| !part.trim().is_empty())
            .map(|part| from_rfc4716(&format!("---- BEGIN SSH2 PUBLIC KEY ----{part}")))
            .collect();
    }
    parse_many(text)
}

/// The algorithms an RFC 4716 body may hold (the line format names it;
/// ssh-key checks that the name matches the key inside).
const ALGORITHMS: [&str; 6] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
];

/// `---- BEGIN SSH2 PUBLIC KEY ----`, headers (`Tag: value`, continued
/// by a trailing `\`), the Base64 body, `---- END SSH2 PUBLIC KEY ----`.
fn from_rfc4716(text: &str) -> Result<GuestKey, String> {
    let mut body = String::new();
    let mut continued = false;
    let mut ended = false;
    for line in text.lines().skip(1).map(str::trim) {
        if line.starts_with("---- END SSH2 PUBLIC KEY ----") {
            ended = true;
            break;
        }
        if continued || line.contains(':') {
            continued = line.ends_with('\\');
            continue;
        }
        body.push_str(line);
    }
    if !ended || body.is_empty() {
        return Err("an RFC 4716 key without its body or its END line".into());
    }
    ALGORITHMS
        .iter()
        .find_map(|alg| parse(&format!("{alg} {body}")).ok())
        .ok_or_else(|| "an RFC 4716 key that does not hold a usable public key".into())
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

    /// An RSA public key line whose modulus is `bytes` long (odd, top
    /// bit set; no private key has it, which a public key does not show).
    fn rsa_with_modulus_of(bytes: usize) -> String {
        PublicKey::from(KeyData::Rsa(rsa_with(&[1, 0, 1], bytes)))
            .to_openssh()
            .unwrap()
    }

    fn rsa_with(e: &[u8], bytes: usize) -> ssh_key::public::RsaPublicKey {
        use ssh_key::{Mpint, public::RsaPublicKey};
        RsaPublicKey {
            e: Mpint::from_positive_bytes(e).unwrap(),
            n: Mpint::from_positive_bytes(&vec![0xc5; bytes]).unwrap(),
        }
    }

    #[test]
    fn ed25519_keys_parse_with_fingerprint_and_without_comment() {
        let k = parse(ED).unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert!(k.fingerprint.starts_with("SHA256:"), "{}", k.fingerprint);
        assert!(!k.openssh.contains("bob@laptop"));
        assert!(parse(include_str!("../../tests/data/keys/rsa3072.pub")).is_ok());
    }

    #[test]
    fn other_formats_are_named_or_converted() {
        let rfc = parse_text(include_str!("../../tests/data/keys/ed25519.rfc4716")).unwrap();
        let ssh = parse_text(ED).unwrap();
        assert_eq!(rfc, ssh, "RFC 4716 converts to the same key");
        let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(parse_text(private).unwrap_err().contains("PRIVATE key"));
        let putty = include_str!("../../tests/data/keys/putty.ppk");
        assert!(parse_text(putty).unwrap_err().contains("PuTTY private key"));
        let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n";
        assert!(
            parse_text(pem)
                .unwrap_err()
                .contains("ssh-keygen -i -m PKCS8")
        );
        let e = parse_text("hello world").unwrap_err();
        assert!(e.contains("got `hello world…`"), "{e}");
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
        // Longer than OpenSSH takes, and far longer: a forge serves what
        // its user uploaded.
        for (bytes, said) in [(2049, "16392 bits is too long"), (200_000, "too long")] {
            let e = parse(&rsa_with_modulus_of(bytes)).unwrap_err();
            assert!(e.contains(said), "{e}");
        }
        assert!(parse(&rsa_with_modulus_of(2048)).is_ok());
        // Counted from the highest set bit: 2041 bits is not 2048.
        let mut short = rsa_with(&[1, 0, 1], 256);
        short.n =
            ssh_key::Mpint::from_positive_bytes(&[&[0x01][..], &[0xc5; 255][..]].concat()).unwrap();
        let e = parse(&PublicKey::from(KeyData::Rsa(short)).to_openssh().unwrap()).unwrap_err();
        assert!(e.contains("2041 bits is too short"), "{e}");
        // A public exponent of 1 (every padded hash is its own signature:
        // a login with the public key alone), or an even one.
        for exp in [&[1u8][..], &[2], &[1, 0, 0]] {
            let k = PublicKey::from(KeyData::Rsa(rsa_with(exp, 256)))
                .to_openssh()
                .unwrap();
            let e = parse(&k).unwrap_err();
            assert!(e.contains("public exponent"), "{exp:?}: {e}");
        }
        for exp in [&[3u8][..], &[0x25], &[1, 0, 1]] {
            let k = PublicKey::from(KeyData::Rsa(rsa_with(exp, 256)))
                .to_openssh()
                .unwrap();
            assert!(parse(&k).is_ok(), "{exp:?}");
        }
        // A security key's application string, as long as the format allows.
        let sk = ssh_key::public::SkEd25519::new(
            ssh_key::public::Ed25519PublicKey([7; 32]),
            format!("ssh:{}", "a".repeat(100_000)),
        );
        let line = PublicKey::from(KeyData::SkEd25519(sk))
            .to_openssh()
            .unwrap();
        let e = parse(&line).unwrap_err();
        assert!(e.contains("bytes is refused"), "{e}");
        let e = parse(include_str!("../../tests/data/keys/dsa.pub")).unwrap_err();
        assert!(
            e.starts_with("DSA keys are refused") || e.starts_with("not an OpenSSH"),
            "{e}"
        );
    }
}
