//! # medianest — a GitOps compiler for homelabs
//!
//! One git repository describes a homelab in TOML (`site/`); `medianest build` compiles
//! it, deterministically, into every file the homelab runs on (`generated/`).
//!
//! ## The pipeline
//!
//! | stage | module | input → output |
//! | --- | --- | --- |
//! | load | [`load`] (`src/load/`) | `site/**/*.toml` → [`load::RawSite`] (files parsed in parallel; core schema in [`load::schema`], key tables in [`load::keys`], each family's own keys given to it typed; spans kept, unknown keys reported against the core and every family) |
//! | resolve | [`resolve`] (`src/resolve/`) | [`load::RawSite`] → [`model::Site`]: typed values ([`model::values`]), names → ids, `[defaults]` and kind defaults ([`model::kinds`]) applied; then each family's keys into [`model::Site::ext`] ([`families::resolve`]) |
//! | verify | [`verify`] (`src/verify/`) | [`model::Site`] → diagnostics: addressing, placement, hardening, traffic, backups; then each family's own checks ([`families::verify`], run by [`ops`]) |
//! | lower | [`families`] | [`model::Site`] → [`render::RenderJob`]s (families in parallel, jobs in a fixed order), one folder per artifact family ([`families::docs`], [`families::base`], [`families::edge`], [`families::haproxy`], [`families::nginx`], [`families::keepalived`], [`families::delivery`], [`families::postgres`]) with its keys, checks, typed template contexts and review facts (ARCHITECTURE.md: "Adding a family") |
//! | render | [`render`] | jobs → [`artifact::Artifact`]s, in parallel (rayon, ordered collect), strict minijinja with per-format escaping ([`render::escape`]) |
//! | emit | [`emit`] | [`artifact::ArtifactSet`] → `generated/` (write only what changed, remove stale files) or a [`emit::Drift`] for `check` |
//!
//! Before it: [`fingerprint`] (a no-op `build` or `check` hashes the inputs, looks at the
//! output tree's `stat` stamps and compiles nothing).
//!
//! Around it: [`diag`] (diagnostics with `file:line:col`, source line and hint, all
//! reported in one run, sorted), [`artifact`] (manifest and per-host apply plans),
//! [`ops`] (the operations behind the commands: `compile`, `build`, `check`; `diff`
//! and `check --committed` in [`ops::diff`], `explain` in [`ops::explain`]), [`review`]
//! (file and semantic changes between two builds, and their text/Markdown/JSON forms),
//! [`git`] (trees at a revision and working-tree status, via git2; only `diff` and
//! `check --committed` use it) and [`cli`] (clap definitions, thin).
//!
//! ## Rules that hold everywhere
//!
//! - `generated/` is a pure function of `site/`, the templates and the medianest version:
//!   no timestamps, no absolute paths, no hash-map order; entities are sorted by name,
//!   artifacts by path; rendering in parallel never decides order.
//! - Every site value is typed at load time; a value that could inject a directive into a
//!   config (newline, `;`, `{`, `}`, quotes, `#`, `$`, backtick, backslash) is rejected, and
//!   templates escape per output format on top of that.
//! - No plaintext secrets: the site names secrets, their values are age ciphertexts in
//!   `site/secrets/` ([`secrets`]); a literal that looks like one is an error.
//! - Nothing is written when the site has an error; never a panic on any input.
//!
//! Beside the pipeline, [`agent`] is `medianest pull`, the host agent: it reads only
//! git, the plan and manifest formats of [`artifact`], and the host; never the renderer.
//!
//! Exit codes (see `medianest --help`): 0 ok, 1 site errors or drift, 2 usage/IO error,
//! 101 a bug.

#![warn(missing_docs)]

pub mod agent;
pub mod artifact;
pub mod cli;
pub mod diag;
pub mod emit;
pub mod families;
pub mod fingerprint;
pub mod git;
pub mod load;
pub mod model;
pub mod ops;
pub mod paths;
pub mod render;
pub mod resolve;
pub mod review;
pub mod secrets;
pub mod verify;
