//! Secrets in git: each value encrypted with age (<https://age-encryption.org/v1>) to
//! exactly the hosts whose services list it (their SSH host keys) plus the site's
//! recovery keys, at `site/secrets/<name>.age`. The compiler checks coverage and
//! recipients; the agent decrypts with its host key into `/run/medianest/secrets/`.
//!
//! Two additions to plain age, both invisible to other age tools (the `age` CLI decrypts
//! these files; it ignores a stanza type it does not know):
//!
//! - **The name is bound into the payload**: the plaintext starts with the line
//!   `medianest-secret v1 <name>`, authenticated by age's AEAD, and the agent refuses a
//!   file whose line names another secret (a ciphertext swapped between two names).
//! - **A `medianest` stanza in the header** lists the secret's name and an id of every
//!   recipient (8 hex of the SHA-256 of the recipient as written). X25519 stanzas do not
//!   reveal their recipient, so this is how `build` knows a file is encrypted to the
//!   recipients the site implies now without any key (the header MAC covers it, so a
//!   host that decrypts also authenticates it). `ssh-ed25519` stanzas carry a tag (4
//!   bytes of the SHA-256 of the key), which `build` cross-checks on top.

pub mod deliver;

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The folder of ciphertexts under `site/`.
pub const SITE_DIR: &str = "secrets";
/// Where the agent delivers secrets on a host: `<RUN_DIR>/<service>/<name>` (a tmpfs).
pub const RUN_DIR: &str = "/run/medianest/secrets";
/// The first line of every age file.
pub const AGE_MAGIC: &str = "age-encryption.org/v1";
/// The first line of the plaintext, followed by the name.
const ENVELOPE: &str = "medianest-secret v1 ";
/// The header stanza that names the secret and its recipients.
const LABEL: &str = "medianest";

/// A recipient: a host's SSH host key, or an operator's recovery key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recipient {
    /// `ssh-ed25519 <base64>` (the comment dropped).
    Ssh(String),
    /// `age1…`.
    X25519(String),
}

/// Parses `ssh-ed25519 AAAA… [comment]` or `age1…`; the message says what is wrong.
pub fn parse_recipient(s: &str) -> Result<Recipient, String> {
    let s = s.trim();
    if s.starts_with("age1") {
        return s
            .parse::<age::x25519::Recipient>()
            .map(|_| Recipient::X25519(s.to_string()))
            .map_err(|e| format!("`{s}` is not an age public key: {e}"));
    }
    let mut words = s.split_whitespace();
    match (words.next(), words.next()) {
        (Some("ssh-ed25519"), Some(b64)) => {
            let line = format!("ssh-ed25519 {b64}");
            line.parse::<age::ssh::Recipient>()
                .map(|_| Recipient::Ssh(line))
                .map_err(|_| format!("`{s}` is not a valid ssh-ed25519 public key"))
        }
        (Some(t), Some(_)) if t.starts_with("ssh-") || t.starts_with("ecdsa-") => {
            Err(format!("`{t}` keys are not supported; use an ssh-ed25519 key (or an `age1…` key)"))
        }
        _ => Err("expected `ssh-ed25519 AAAA…` (a public key line) or `age1…`".into()),
    }
}

impl Recipient {
    /// The recipient as written in the site, without a comment.
    pub fn text(&self) -> &str {
        match self {
            Recipient::Ssh(s) | Recipient::X25519(s) => s,
        }
    }

    /// The id listed in the `medianest` stanza: 8 hex of the SHA-256 of [`Self::text`].
    pub fn id(&self) -> String {
        crate::artifact::sha256_hex(self.text().as_bytes())[..8].to_string()
    }

    /// The tag of an `ssh-ed25519` stanza for this key (none for X25519).
    pub fn ssh_tag(&self) -> Option<String> {
        let Recipient::Ssh(line) = self else { return None };
        let blob = base64::engine::general_purpose::STANDARD.decode(line.split(' ').nth(1)?).ok()?;
        Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&Sha256::digest(&blob)[..4]))
    }

    fn to_age(&self) -> Result<Box<dyn age::Recipient + Send>> {
        Ok(match self {
            Recipient::Ssh(s) => Box::new(
                s.parse::<age::ssh::Recipient>().map_err(|_| anyhow::anyhow!("`{s}` is not an ssh-ed25519 key"))?,
            ),
            Recipient::X25519(s) => Box::new(s.parse::<age::x25519::Recipient>().map_err(|e| anyhow::anyhow!(e))?),
        })
    }
}

/// The `medianest` stanza: wraps nothing, lists the name and the recipients' ids.
struct Label {
    args: Vec<String>,
}

impl age::Recipient for Label {
    fn wrap_file_key(
        &self,
        _: &age_core::format::FileKey,
    ) -> Result<(Vec<age_core::format::Stanza>, HashSet<String>), age::EncryptError> {
        Ok((
            vec![age_core::format::Stanza { tag: LABEL.into(), args: self.args.clone(), body: Vec::new() }],
            HashSet::new(),
        ))
    }
}

/// Encrypts `value` as secret `name` to `recipients` (at least one).
pub fn encrypt(name: &str, value: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>> {
    if recipients.is_empty() {
        bail!("secret `{name}` has no recipient: no host needs it and the site declares no recovery key");
    }
    let ids: BTreeSet<String> = recipients.iter().map(Recipient::id).collect();
    let label = Label { args: std::iter::once("v1".to_string()).chain([name.to_string()]).chain(ids).collect() };
    let keys = recipients.iter().map(Recipient::to_age).collect::<Result<Vec<_>>>()?;
    let all = keys.iter().map(|k| k.as_ref() as &dyn age::Recipient).chain([&label as &dyn age::Recipient]);
    let enc = age::Encryptor::with_recipients(all).context("failed to set up age encryption")?;
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).context("failed to encrypt")?;
    w.write_all(format!("{ENVELOPE}{name}\n").as_bytes())?;
    w.write_all(value)?;
    w.finish().context("failed to encrypt")?;
    Ok(out)
}

/// Why a ciphertext did not decrypt.
#[derive(Debug, thiserror::Error)]
pub enum DecryptFailure {
    /// None of the identities is a recipient.
    #[error("it is not encrypted to this key")]
    NotForMe,
    /// The payload names another secret.
    #[error("it holds the secret `{0}`, not this one (a ciphertext moved or swapped between names)")]
    Swapped(String),
    /// Not an age file of medianest, or corrupt.
    #[error("{0}")]
    Bad(String),
}

/// Decrypts the ciphertext of secret `name`; the value without the envelope line.
pub fn decrypt(
    name: &str,
    ciphertext: &[u8],
    identities: &[Box<dyn age::Identity>],
) -> Result<Zeroizing<Vec<u8>>, DecryptFailure> {
    let dec = age::Decryptor::new(ciphertext).map_err(|e| DecryptFailure::Bad(format!("not an age file: {e}")))?;
    let mut r = dec.decrypt(identities.iter().map(|i| i.as_ref())).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => DecryptFailure::NotForMe,
        e => DecryptFailure::Bad(format!("age: {e}")),
    })?;
    let mut plain = Zeroizing::new(Vec::new());
    r.read_to_end(&mut plain).map_err(|e| DecryptFailure::Bad(format!("age: {e}")))?;
    let Some(nl) = plain.iter().position(|b| *b == b'\n') else {
        return Err(DecryptFailure::Bad("the payload has no `medianest-secret` line".into()));
    };
    let first = String::from_utf8_lossy(&plain[..nl]).into_owned();
    match first.strip_prefix(ENVELOPE) {
        Some(n) if n == name => Ok(Zeroizing::new(plain[nl + 1..].to_vec())),
        Some(n) => Err(DecryptFailure::Swapped(n.chars().filter(|c| !c.is_control()).take(64).collect())),
        None => Err(DecryptFailure::Bad("the payload has no `medianest-secret` line".into())),
    }
}

/// Reads an identity file: an OpenSSH private key (unencrypted) or an age identity file
/// (`AGE-SECRET-KEY-1…` lines).
pub fn read_identity(path: &std::path::Path) -> Result<Vec<Box<dyn age::Identity>>> {
    let bytes = Zeroizing::new(std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))?);
    identities_from(&bytes).with_context(|| format!("`{}` is not a usable identity", path.display()))
}

/// [`read_identity`] on the bytes of the file.
pub fn identities_from(bytes: &[u8]) -> Result<Vec<Box<dyn age::Identity>>> {
    if bytes.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----") {
        match age::ssh::Identity::from_buffer(bytes, None).context("unreadable OpenSSH key")? {
            age::ssh::Identity::Unencrypted(k) => Ok(vec![Box::new(age::ssh::Identity::Unencrypted(k))]),
            age::ssh::Identity::Encrypted(_) => {
                bail!("it is passphrase-protected; use an unencrypted key file (e.g. on a tmpfs) or an age identity")
            }
            age::ssh::Identity::Unsupported(k) => bail!("unsupported SSH key: {k:?}"),
        }
    } else {
        let f = age::IdentityFile::from_buffer(bytes).context("neither an OpenSSH private key nor an age identity")?;
        let ids = f.into_identities().map_err(|e| anyhow::anyhow!("{e}"))?;
        if ids.is_empty() {
            bail!("it holds no key");
        }
        Ok(ids.into_iter().map(|i| i as Box<dyn age::Identity>).collect())
    }
}

/// The text header of an age file, as the build reads it (no key needed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// Each stanza's type and arguments, in order.
    pub stanzas: Vec<(String, Vec<String>)>,
    /// Length of the header text in bytes (through the `---` line).
    pub len: usize,
}

impl Header {
    /// Parses the header of an age file (binary format); `None` when it is not one.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let mut h = Header::default();
        let mut lines = bytes.split_inclusive(|b| *b == b'\n');
        let first = lines.next()?;
        if first != format!("{AGE_MAGIC}\n").as_bytes() {
            return None;
        }
        h.len = first.len();
        for line in lines {
            h.len += line.len();
            let text = std::str::from_utf8(line).ok()?.strip_suffix('\n')?;
            if let Some(rest) = text.strip_prefix("-> ") {
                let mut words = rest.split(' ').map(str::to_string);
                h.stanzas.push((words.next()?, words.collect()));
            } else if text.starts_with("---") {
                return Some(h);
            } else if h.stanzas.is_empty() || text.len() > 64 {
                return None;
            }
        }
        None
    }

    /// The name and recipient ids of the `medianest` stanza.
    pub fn label(&self) -> Option<(&str, BTreeSet<&str>)> {
        let (_, args) = self.stanzas.iter().find(|(t, a)| t == LABEL && a.first().is_some_and(|v| v == "v1"))?;
        Some((args.get(1)?.as_str(), args[2..].iter().map(String::as_str).collect()))
    }

    /// The tags of the `ssh-ed25519` stanzas.
    pub fn ssh_tags(&self) -> BTreeSet<&str> {
        self.stanzas
            .iter()
            .filter(|(t, _)| t == "ssh-ed25519")
            .filter_map(|(_, a)| a.first().map(String::as_str))
            .collect()
    }

    /// How many stanzas wrap the file key for a recipient type medianest uses (age also
    /// writes random "grease" stanzas, which are not counted).
    pub fn wrapped(&self) -> usize {
        self.stanzas.iter().filter(|(t, _)| t == "X25519" || t == "ssh-ed25519").count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x25519() -> (Recipient, Box<dyn age::Identity>) {
        let id = age::x25519::Identity::generate();
        (Recipient::X25519(id.to_public().to_string()), Box::new(id))
    }

    #[test]
    fn round_trip_binds_the_name_and_lists_recipients() {
        let (a, ia) = x25519();
        let (b, _) = x25519();
        let c = encrypt("db_password", b"hunter2\n", &[a.clone(), b.clone()]).unwrap();
        let h = Header::parse(&c).unwrap();
        let (name, ids) = h.label().unwrap();
        assert_eq!(name, "db_password");
        assert_eq!(ids, [a.id(), b.id()].iter().map(String::as_str).collect());
        assert_eq!(h.wrapped(), 2);
        assert_eq!(&decrypt("db_password", &c, &[ia]).unwrap()[..], b"hunter2\n");
    }

    #[test]
    fn a_swapped_or_foreign_ciphertext_is_refused() {
        let (a, ia) = x25519();
        let c = encrypt("one", b"v", &[a]).unwrap();
        assert!(matches!(decrypt("two", &c, &[ia]), Err(DecryptFailure::Swapped(n)) if n == "one"));
        let (_, other) = x25519();
        assert!(matches!(decrypt("one", &c, &[other]), Err(DecryptFailure::NotForMe)));
        assert!(Header::parse(b"hunter2\n").is_none());
    }

    proptest::proptest! {
        /// A file under `site/secrets/` is untrusted input: any bytes after the magic
        /// line are parsed without a panic.
        #[test]
        fn any_header_parses_without_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut v = format!("{AGE_MAGIC}\n-> medianest v1").into_bytes();
            v.extend(tail);
            if let Some(h) = Header::parse(&v) {
                let _ = (h.label(), h.ssh_tags(), h.wrapped());
            }
            let _ = decrypt("x", &v, &[]);
        }
    }

    #[test]
    fn recipients_parse() {
        assert!(parse_recipient("ssh-rsa AAAAB3Nza x").unwrap_err().contains("not supported"));
        assert!(parse_recipient("hunter2").is_err());
        assert!(parse_recipient("age1nope").is_err());
    }
}
