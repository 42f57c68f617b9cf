//! MinIO's TLS, shared by the families that touch it (not a family: no keys, no files
//! of its own). pgBackRest speaks S3 over HTTPS only, so every MinIO serves TLS:
//!
//! - **backups** issues the certificate on the MinIO host (`/etc/medianest/minio/tls.sh`,
//!   run by `medianest-minio-tls.service`) into [`TLS_DIR`], signed by the site's MinIO CA
//!   (`[minio_tls] ca`, whose key is the secret [`CA_KEY_SECRET`]), and writes that CA to
//!   [`CA_FILE`] on every host that speaks to MinIO;
//! - **containers** runs MinIO with `--certs-dir` [`CERTS_DIR`] (the host's [`TLS_DIR`],
//!   read-only) and health-checks it over HTTPS, trusting [`CA_IN_CERTS`];
//! - **prometheus** scrapes it over HTTPS with [`CA_FILE`].
//!
//! Why the key is made on the host and the CA key is a secret there: README, "MinIO's
//! TLS".

/// The CA that signs MinIO's certificates, on every host that speaks to MinIO (the
/// backup jobs' hosts, Prometheus's, MinIO's own): public, from `[minio_tls] ca`.
pub const CA_FILE: &str = "/etc/medianest/tls/minio-ca.crt";
/// MinIO's certificate directory on its host: `public.crt`, `private.key` and
/// `CAs/minio-ca.crt`, written by the issuing script only (never by the agent, never in
/// git: the key is made here).
pub const TLS_DIR: &str = "/etc/medianest/tls/minio";
/// Where the container sees [`TLS_DIR`] (`minio server --certs-dir`).
pub const CERTS_DIR: &str = "/certs";
/// The CA as the container sees it (the health check trusts it).
pub const CA_IN_CERTS: &str = "/certs/CAs/minio-ca.crt";
/// The CA's private key: a secret delivered to each MinIO host only.
pub const CA_KEY_SECRET: &str = "minio_tls_ca_key";
/// The issuing script.
pub const TLS_SCRIPT: &str = "/etc/medianest/minio/tls.sh";
/// Its unit (`.service` and `.timer`).
pub const TLS_UNIT: &str = "medianest-minio-tls";
/// Days a certificate is issued for.
pub const CERT_DAYS: u64 = 90;
/// Days before its end that it is issued again (the timer runs daily).
pub const RENEW_DAYS: u64 = 30;
/// MinIO's data directory when the service mounts no volume (the image's `VOLUME`).
pub const DEFAULT_DATA: &str = "/data";
