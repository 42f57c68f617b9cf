//! Arbitrary bytes as site files: the input is split at NUL bytes into up to four files,
//! so multi-file interactions (duplicates across files, flows in several files) are
//! reachable too. Seeded from the reference site by scripts/fuzz.sh.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let files: Vec<(String, Vec<u8>)> =
        data.splitn(4, |b| *b == 0).enumerate().map(|(i, part)| (format!("f{i}.toml"), part.to_vec())).collect();
    common::run(files);
});
