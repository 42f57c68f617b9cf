//! Stage 3, **verify**: the core checks that need the whole [`Site`].
//!
//! One file per concern: `addressing` (VLANs, overlapping networks, addresses inside
//! their zone and unique), `placement` (hosts, where services run, dependencies, port
//! clashes), `hardening` (container defaults and their written exceptions, secrets),
//! `traffic` (exposures, flows against guard-rails), `backups` (policies against
//! the RPO) and `secrets` (ciphertexts against who needs them). They only read the model and push diagnostics; none stops at the first
//! problem. Values that failed to resolve are `None` in the model and are skipped here,
//! so one mistake is reported once.
//!
//! Checks that only one artifact family needs (certificates for the edge, a VIP for
//! keepalived, a primary for postgres) live in that family's `verify`, which
//! [`crate::ops`] runs after these: this stage knows nothing of families.

mod addressing;
mod backups;
mod hardening;
mod placement;
pub mod secrets;
mod traffic;

use crate::diag::Diagnostics;
use crate::model::Site;

/// Runs every core check.
pub fn verify(site: &Site, diags: &mut Diagnostics) {
    addressing::addressing(site, diags);
    placement::hosts(site, diags);
    placement::services(site, diags);
    hardening::hardening(site, diags);
    hardening::secrets(site, diags);
    traffic::exposure(site, diags);
    traffic::flows(site, diags);
    backups::backups(site, diags);
    secrets::secrets(site, diags);
}
