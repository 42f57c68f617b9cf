//! Properties: random edits of a valid site never panic the compiler; it either builds
//! or reports errors (and then produces nothing).

use proptest::prelude::*;

use crate::support::*;
use medianest::ops::{Paths, compile};

/// Fragments that tend to break parsers and checks.
const FRAGMENTS: &[&str] = &[
    "",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    "\n",
    "#",
    ";",
    "$",
    "\\",
    "\u{0}",
    "é",
    "🦀",
    "0",
    "-1",
    "99999999999999999999",
    "10.1.1.300",
    "10.1.3.10",
    "/24",
    "tcp/",
    "udp/0",
    "service:",
    "zone:",
    "host:",
    "internet",
    "true",
    "1.5",
    "[[flows]]",
    "[hosts.x]",
    "kind = \"vm\"",
    "\"latest\"",
    "nginx",
    "pve1",
    "db",
    "\"\"",
    ",",
    "..",
    "/run/secrets/",
    "x = 1",
];

fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for (pos, del, frag) in edits {
        if s.is_empty() {
            break;
        }
        let at = pos % s.len();
        let end = (at + del % 12).min(s.len());
        let ins: Vec<char> = FRAGMENTS[frag % FRAGMENTS.len()].chars().collect();
        s.splice(at..end, ins);
    }
    s.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_site_edits_never_panic(
        file in 0usize..5,
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..6),
    ) {
        let repo = Repo::base();
        let mut files: Vec<_> = read_tree(&repo.path().join("site")).into_keys().collect();
        files.sort();
        let name = &files[file % files.len()];
        let path = repo.path().join("site").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, mutate(&text, &edits)).unwrap();
        let compiled = compile(&Paths::under(repo.path()));
        if compiled.failed() {
            prop_assert!(compiled.artifacts.is_empty());
            let rendered = compiled.diags.render_plain(&compiled.sources);
            prop_assert!(rendered.contains("error["));
        } else {
            prop_assert!(!compiled.artifacts.is_empty());
            for path in compiled.artifacts.keys() {
                prop_assert!(!path.starts_with('/') && !path.split('/').any(|s| s == ".."));
            }
        }
    }
}
