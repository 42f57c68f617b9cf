//! The backups family's own keys: on `[backups.<name>]`, what a job reads (`paths` for
//! restic, `dataset` for ZFS, `bucket` for a MinIO target), and on a MinIO service the
//! `buckets` it holds.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostics, Loc};
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::values::{self, ValueError};
use crate::model::{At, ServiceId, ServiceKind, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// The backups family's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct BackupsFile {
        /// The backups family's keys on backup policies.
        #[serde(default)]
        pub backups: Named<BackupKeys>,
        /// The backups family's keys on services.
        #[serde(default)]
        pub services: Named<MinioService>,
        /// MinIO's TLS: the site's MinIO CA.
        pub minio_tls: Option<Spanned<RawMinioTls>>,
    }
}

crate::keys! {
    /// `[minio_tls]`: the CA that signs every MinIO's certificate (required when the site has a `minio` service).
    #[derive(Debug, Deserialize)]
    pub struct RawMinioTls {
        /// Required. The CA certificate, PEM (`-----BEGIN CERTIFICATE-----` …), public: written to `/etc/medianest/tls/minio-ca.crt` on every host that speaks to MinIO. Its private key is the secret `minio_tls_ca_key`, delivered to the MinIO hosts only, which issue their own certificate with it (README, "MinIO's TLS").
        pub ca: Option<Str>,
    }
}

crate::keys! {
    /// The backups family's keys of `[backups.<name>]`: what its job reads and where it writes.
    #[derive(Debug, Deserialize)]
    pub struct BackupKeys {
        /// Directories a `restic` policy backs up (absolute paths on the host that runs the job). Default: the service's volumes (their directories under `/srv/medianest/<service>/`, or an NFS volume's export on its server, which then runs the job), else the data directory Debian's package of the service's kind uses.
        #[serde(default)]
        pub paths: Vec<Str>,
        /// Required for `zfs-snapshot`: the dataset sanoid snapshots and syncoid sends to the target host (e.g. `tank/minio`). It is received there as `<pool of the dataset>/backup/<host>/<dataset without its pool>`.
        pub dataset: Option<Str>,
        /// The bucket of a MinIO target (default `backups`); it must be one of the MinIO service's `buckets`. Each policy writes under its own prefix, `<bucket>/<policy>`.
        pub bucket: Option<Str>,
    }
}

crate::keys! {
    /// The backups family's keys of `[services.<name>]` (`kind = "minio"` only).
    #[derive(Debug, Deserialize)]
    pub struct MinioService {
        /// The buckets this MinIO holds (default `["backups"]`): S3 names, 3 to 63 lowercase letters, digits, `-` and `.`. Backup policies name theirs with `bucket`; `/etc/medianest/minio/buckets.sh` creates them.
        #[serde(default)]
        pub buckets: Vec<Str>,
    }
}

/// The bucket of a policy that names none, and of a MinIO service that lists none.
pub const DEFAULT_BUCKET: &str = "backups";

/// The backups family's model.
#[derive(Debug, Default)]
pub struct Model {
    /// `paths` of each policy that writes them, by policy name.
    pub paths: BTreeMap<String, Vec<At<String>>>,
    /// `dataset`, by policy name.
    pub dataset: BTreeMap<String, At<String>>,
    /// The policies that write a `dataset`, valid or not (an invalid one is reported
    /// once, not again as missing).
    pub dataset_written: std::collections::BTreeSet<String>,
    /// `bucket`, by policy name.
    pub bucket: BTreeMap<String, At<String>>,
    /// `buckets` of each MinIO service that lists them.
    pub buckets: BTreeMap<ServiceId, Vec<At<String>>>,
    /// `[minio_tls] ca`, normalized (one certificate block after another).
    pub ca: Option<At<String>>,
    /// Where `[minio_tls]` is written, valid or not (a CA that does not parse is
    /// reported once, not again as missing).
    pub ca_written: Option<Loc>,
}

/// An S3 bucket name as MinIO accepts it.
pub fn bucket_name(s: &str) -> Result<String, ValueError> {
    let ok = (3..=63).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !s.contains("..");
    if ok {
        Ok(s.to_string())
    } else {
        Err(ValueError {
            code: "bad-value",
            message: format!("`{}` is not an S3 bucket name", values::printable(s)),
            help: "use 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, e.g. `backups`".into(),
        })
    }
}

/// A CA certificate as PEM: one or more `CERTIFICATE` blocks of base64 DER and nothing
/// else, returned one block after another with 64-column lines. A private key is
/// refused as a secret: its place is `site/secrets/`.
pub fn ca_pem(s: &str) -> Result<String, ValueError> {
    use base64::Engine;
    let bad = |why: &str| {
        ValueError {
        code: "bad-value",
        message: format!("`[minio_tls] ca` is not a PEM certificate: {why}"),
        help: "paste the CA certificate (`ca.crt` of README's recipe) between triple quotes, from `-----BEGIN CERTIFICATE-----` to `-----END CERTIFICATE-----`".into(),
    }
    };
    if s.contains("PRIVATE KEY-----") {
        return Err(ValueError {
            code: "secret-value",
            message: "`[minio_tls] ca` holds a private key".into(),
            help: "keep only the certificate here; the CA's key is the secret `minio_tls_ca_key` (`medianest secrets set minio_tls_ca_key < ca.key`)".into(),
        });
    }
    let mut out = String::new();
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(begin) = lines.next() {
        if begin != "-----BEGIN CERTIFICATE-----" {
            return Err(bad(&format!("`{}` where `-----BEGIN CERTIFICATE-----` belongs", values::printable(begin))));
        }
        let mut b64 = String::new();
        loop {
            match lines.next() {
                Some("-----END CERTIFICATE-----") => break,
                Some(l) if l.bytes().all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c)) => b64.push_str(l),
                Some(l) => return Err(bad(&format!("`{}` is not base64", values::printable(l)))),
                None => return Err(bad("no `-----END CERTIFICATE-----`")),
            }
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .map_err(|e| bad(&format!("its base64 does not decode ({e})")))?;
        // A DER certificate is a SEQUENCE: 0x30.
        if der.first() != Some(&0x30) || der.len() < 64 {
            return Err(bad("its content is not a DER certificate"));
        }
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    if out.is_empty() {
        return Err(bad("it is empty"));
    }
    Ok(out)
}

/// The SHA-256 fingerprint of each certificate of a PEM text [`ca_pem`] returned, as
/// `openssl x509 -fingerprint -sha256` prints it (`AB:CD:…`): what the review shows.
pub fn fingerprints(pem: &str) -> Vec<String> {
    use base64::Engine;
    use sha2::Digest;
    let mut out = Vec::new();
    let mut b64 = String::new();
    for l in pem.lines() {
        match l {
            "-----BEGIN CERTIFICATE-----" => b64.clear(),
            "-----END CERTIFICATE-----" => {
                let der = base64::engine::general_purpose::STANDARD.decode(&b64).unwrap_or_default();
                let hex = base16ct::upper::encode_string(&sha2::Sha256::digest(&der));
                let pairs: Vec<&str> = (0..hex.len()).step_by(2).map(|i| &hex[i..i + 2]).collect();
                out.push(pairs.join(":"));
            }
            l => b64.push_str(l),
        }
    }
    out
}

/// A ZFS dataset name (`pool/path`), as `zfs create` accepts it.
pub fn dataset_name(s: &str) -> Result<String, ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && !s.ends_with('/')
        && !s.contains("//")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(ValueError {
            code: "bad-value",
            message: format!("`{}` is not a ZFS dataset name", values::printable(s)),
            help: "write the pool and the dataset, e.g. `tank/minio` (letters, digits, `_-.:`, `/` between parts)"
                .into(),
        })
    }
}

/// Types the backups family's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<BackupsFile>(parts);
    let mut out = Model::default();
    for (file, f) in &files {
        for (name, k) in f.backups.iter() {
            let policy = name.get_ref().clone();
            let mut cx = Cx::new(*file, site, diags);
            let paths: Vec<At<String>> = k.paths.iter().filter_map(|p| cx.value(p, values::abs_path)).collect();
            if !paths.is_empty() {
                out.paths.insert(policy.clone(), paths);
            }
            if k.dataset.is_some() {
                out.dataset_written.insert(policy.clone());
            }
            if let Some(v) = k.dataset.as_ref().and_then(|v| cx.value(v, dataset_name)) {
                out.dataset.insert(policy.clone(), v);
            }
            if let Some(v) = k.bucket.as_ref().and_then(|v| cx.value(v, bucket_name)) {
                out.bucket.insert(policy, v);
            }
        }
    }
    for (file, f) in &files {
        let Some(t) = &f.minio_tls else { continue };
        let mut cx = Cx::new(*file, site, diags);
        let at = cx.loc(t.span());
        out.ca_written = Some(at.clone());
        if let Some(v) = cx.required(&t.get_ref().ca, &at, "ca", "[minio_tls]") {
            match ca_pem(v.get_ref()) {
                Ok(pem) => out.ca = Some(At { value: pem, loc: cx.loc(v.span()) }),
                // A pasted private key: the diagnostic points at the opening quote only,
                // so it never prints the key.
                Err(e) if e.code == "secret-value" => cx.bad(cx.loc(v.span().start..v.span().start + 1), e),
                Err(e) => cx.bad(cx.loc(v.span()), e),
            }
        }
    }
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    for (file, id, k) in service_keys(site, &services) {
        if k.buckets.is_empty() {
            continue;
        }
        let svc = site.service(id);
        let mut cx = Cx::new(file, site, diags);
        if svc.declared.kind_known && svc.kind.value != ServiceKind::Minio {
            cx.not_for_kind("buckets", "minio", svc, k.buckets[0].span());
            continue;
        }
        let v: Vec<At<String>> = k.buckets.iter().filter_map(|b| cx.value(b, bucket_name)).collect();
        out.buckets.insert(id, v);
    }
    out
}
