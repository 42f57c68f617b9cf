//! Secrets delivery (when the site declares `[secrets]` or holds ciphertexts): every
//! secret a service names has its ciphertext, every ciphertext is named, each is
//! encrypted to exactly the hosts that need it plus the recovery keys, every host that
//! needs one has a key to encrypt to, and nothing under `site/secrets/` is plaintext.
//! All of it from the age headers: the build holds no key.

use std::collections::BTreeSet;

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::{SecretNeed, Site};
use crate::secrets::Header;

const REKEY: &str = "run `medianest secrets rekey` (with `--identity` a recovery key) and commit the result";

pub(super) fn secrets(site: &Site, diags: &mut Diagnostics) {
    if !site.delivers_secrets() {
        return;
    }
    let needs = site.secret_needs();
    let mut keyless = BTreeSet::new();
    for (name, need) in &needs {
        keyless.extend(need.hosts.iter().filter(|h| !site.host(**h).ssh_host_key_written));
        if site.secrets.file(name).is_none() {
            let users: Vec<&str> = need.all_services().into_iter().map(|s| site.service(s).name.as_str()).collect();
            diags.push(
                Diagnostic::error(
                    "secret-missing",
                    format!("secret `{name}` (needed by {}) has no encrypted file", users.join(", ")),
                    need.first.clone(),
                )
                .label("named here")
                .help(format!(
                    "create it with `medianest secrets set {name} < value` (or `secrets edit {name}`): it writes `site/secrets/{name}.age`"
                )),
            );
        }
    }
    for h in keyless {
        let host = site.host(h);
        diags.push(
            Diagnostic::error(
                "secret-no-host-key",
                format!("host `{}` runs services that need secrets but declares no `ssh_host_key`", host.name),
                host.loc.clone(),
            )
            .help("add `ssh_host_key = \"ssh-ed25519 AAAA…\"` (the line of `/etc/ssh/ssh_host_ed25519_key.pub` on the host), then `medianest secrets rekey`"),
        );
    }
    for f in &site.secrets.files {
        let (Some(name), Some(header)) = (&f.name, &f.header) else {
            diags.push(
                Diagnostic::error(
                    "secret-plaintext",
                    format!("`site/secrets/{}` is not an age-encrypted `<name>.age` file", f.rel),
                    f.loc.clone(),
                )
                .help("only ciphertexts written by `medianest secrets set` belong here; if this was a plaintext, delete it, purge it from the history and rotate the value"),
            );
            continue;
        };
        let Some(need) = needs.get(name.as_str()) else {
            diags.push(
                Diagnostic::error("secret-unused", format!("no service names the secret `{name}`"), f.loc.clone())
                    .help(format!("delete `site/secrets/{name}.age`, or add `\"{name}\"` to the `secrets` of the services that need it")),
            );
            continue;
        };
        let Some((label, _)) = header.label() else {
            diags.push(
                Diagnostic::error(
                    "secret-recipients",
                    format!(
                        "`site/secrets/{name}.age` was not written by medianest, so its recipients cannot be checked"
                    ),
                    f.loc.clone(),
                )
                .help(REKEY),
            );
            continue;
        };
        if label != name {
            diags.push(
                Diagnostic::error(
                    "secret-swapped",
                    format!("`site/secrets/{name}.age` holds the secret `{label}`"),
                    f.loc.clone(),
                )
                .help(format!("a ciphertext was moved or swapped: put it back at `site/secrets/{label}.age`, or write this one with `medianest secrets set {name}`")),
            );
            continue;
        }
        if need.hosts.iter().any(|h| site.host(*h).ssh_host_key.is_none()) || site.secrets.recovery_invalid {
            // A host or recovery key that is not usable is reported once, above or where
            // it is written: every file would otherwise repeat it as "an unknown key".
            continue;
        }
        let wrong = recipient_problems(site, need, header);
        if !wrong.is_empty() {
            diags.push(
                Diagnostic::error(
                    "secret-recipients",
                    format!(
                        "`site/secrets/{name}.age` is not encrypted to exactly the hosts that need it: {}",
                        wrong.join("; ")
                    ),
                    f.loc.clone(),
                )
                .help(REKEY),
            );
        }
    }
}

/// What is wrong with the recipients of a ciphertext written by medianest (its label
/// names `need`'s secret): empty when it is encrypted to exactly the hosts that need it
/// and the recovery keys. `secrets rekey` re-encrypts a file for which this is not empty.
pub fn recipient_problems(site: &Site, need: &SecretNeed, header: &Header) -> Vec<String> {
    let Some((_, ids)) = header.label() else { return vec!["it lists no recipients".into()] };
    // Every host key and recovery key by id, to name who a file is encrypted to.
    let mut known: Vec<(String, String)> = site
        .hosts
        .iter()
        .filter_map(|h| Some((h.ssh_host_key.as_ref()?.value.id(), format!("host `{}`", h.name))))
        .collect();
    known.extend(site.secrets.recovery.iter().map(|k| (k.value.id(), "a recovery key".to_string())));
    let who = |id: &str| {
        known.iter().find(|(k, _)| k == id).map(|(_, w)| w.clone()).unwrap_or(format!("an unknown key ({id})"))
    };
    let expected = site.secret_recipients(need);
    let want: BTreeSet<String> = expected.iter().map(|r| r.id()).collect();
    let have: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    let mut wrong: Vec<String> = Vec::new();
    for h in &need.hosts {
        let host = site.host(*h);
        if let Some(k) = &host.ssh_host_key
            && !have.contains(&k.value.id())
        {
            wrong.push(format!("not encrypted to host `{}`, which needs it", host.name));
        }
    }
    for k in &site.secrets.recovery {
        if !have.contains(&k.value.id()) {
            wrong.push(format!("not encrypted to the recovery key `{}`", short(k.value.text())));
        }
    }
    for id in have.difference(&want) {
        wrong.push(format!("encrypted to {}, which does not need it", who(id)));
    }
    // The label is a claim; the stanzas are the fact: as many as it lists, and an
    // ssh-ed25519 stanza for each SSH key it lists.
    let tags = header.ssh_tags();
    if header.wrapped() != have.len()
        || expected
            .iter()
            .filter(|r| have.contains(&r.id()))
            .filter_map(|r| r.ssh_tag())
            .any(|t| !tags.contains(t.as_str()))
    {
        wrong.push("its stanzas do not match the recipients it lists".into());
    }
    wrong
}

fn short(key: &str) -> String {
    if key.len() > 24 { format!("{}…", &key[..24]) } else { key.to_string() }
}
