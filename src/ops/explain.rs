//! `medianest explain <generated path>[:<line>]`: where a generated file, or one of its
//! lines, comes from.

use std::fmt::Write;

use anyhow::{Result, bail};

use super::Compiled;
use crate::artifact::MANIFEST;
use crate::diag::Loc;
use crate::render::TemplateOrigin;

/// Splits `path[:line]` and strips a leading `generated/`.
pub fn parse_target(target: &str, out_name: &str) -> Result<(String, Option<usize>)> {
    let (path, line) = match target.rsplit_once(':') {
        Some((p, l)) if !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()) => {
            let n: usize = l.parse()?;
            if n == 0 {
                bail!("line numbers start at 1");
            }
            (p, Some(n))
        }
        _ => (target, None),
    };
    let path = path.trim_start_matches("./");
    let path = path.strip_prefix(&format!("{out_name}/")).unwrap_or(path);
    Ok((path.to_string(), line))
}

fn at(c: &Compiled, loc: &Loc) -> String {
    let (l, col) = c.sources.line_col(loc.file, loc.span.start);
    format!("{}:{l}:{col}", c.sources.name(loc.file))
}

/// Whether `name` occurs in `line` as a whole word (not inside a longer name).
fn mentions(line: &str, name: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    line.match_indices(name).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + name.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The explanation of a file (and a line of it) in a compiled site.
pub fn explain(c: &Compiled, path: &str, line: Option<usize>, out_name: &str) -> Result<String> {
    let mut s = String::new();
    if path == MANIFEST {
        let _ = writeln!(s, "{out_name}/{MANIFEST}");
        let _ = writeln!(
            s,
            "  made by:   `medianest build`, from every other generated file (path, sha256, size, mode, owner, host, family, site files)"
        );
        let _ = writeln!(
            s,
            "  used by:   `medianest check`, `diff` and the host agent, to verify files and find stale ones"
        );
        return Ok(s);
    }
    let Some(a) = c.artifacts.get(path) else {
        let near: Vec<&str> = c
            .artifacts
            .keys()
            .map(String::as_str)
            .filter(|p| p.ends_with(path.rsplit('/').next().unwrap_or(path)))
            .take(5)
            .collect();
        let hint = if near.is_empty() { String::new() } else { format!("; similar: {}", near.join(", ")) };
        bail!("`{out_name}/{path}` is not a file that the site compiles to{hint}");
    };
    let m = &a.meta;
    let _ = writeln!(s, "{out_name}/{path}");
    let _ = writeln!(s, "  family:    {}", m.family);
    if m.template.is_empty() {
        let _ = writeln!(s, "  made by:   medianest itself (data, not a template)");
    } else {
        let origin = match c.templates.origin(&m.template) {
            Some(TemplateOrigin::Site) => "the site's override".to_string(),
            _ => format!("built-in; override it with `templates/{}`", m.template),
        };
        let _ = writeln!(s, "  template:  {} ({origin})", m.template);
    }
    if let (Some(h), Some(apply)) = (&m.host, &m.apply) {
        let _ =
            writeln!(s, "  host:      {h} installs it at {} (mode {:04o}, owner {})", apply.target, m.mode, m.owner);
        let mut acts = Vec::new();
        acts.extend(apply.validate.as_ref().map(|v| format!("validate with {v}")));
        acts.extend(apply.reload.as_ref().map(|v| format!("reload {v}")));
        acts.extend(apply.restart.as_ref().map(|v| format!("restart {v}")));
        let _ = writeln!(
            s,
            "  on apply:  {}",
            if acts.is_empty() { "nothing to validate or reload".into() } else { acts.join(", ") }
        );
    } else if let Some(h) = &m.host {
        let _ = writeln!(s, "  host:      {h} (read by its agent)");
    }
    let _ = writeln!(s, "  from:      {}", if m.sources.is_empty() { "-".into() } else { m.sources.join(", ") });
    let Some(n) = line else {
        if !m.traces.is_empty() {
            let _ = writeln!(
                s,
                "  mentions:  {} site entities; add `:<line>` to see which a line comes from",
                m.traces.len()
            );
        }
        return Ok(s);
    };
    let text = String::from_utf8_lossy(&a.bytes);
    let Some(l) = text.lines().nth(n - 1) else {
        bail!("`{out_name}/{path}` has {} lines, not {n}", text.lines().count());
    };
    let _ = writeln!(s, "line {n}: {l}");
    let mut found: Vec<_> = m.traces.iter().filter(|t| mentions(l, &t.name)).collect();
    found.sort_by(|a, b| b.name.len().cmp(&a.name.len()).then(a.name.cmp(&b.name)));
    if found.is_empty() {
        let _ =
            writeln!(s, "  no single site entity: this line is fixed text of the template, or derived from several");
    }
    for t in found {
        let _ = writeln!(s, "  {} `{}`, defined at {}", t.what, t.name, at(c, &t.loc));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(parse_target("generated/docs/a.md:12", "generated").unwrap(), ("docs/a.md".into(), Some(12)));
        assert_eq!(parse_target("docs/a.md", "generated").unwrap(), ("docs/a.md".into(), None));
        assert!(parse_target("docs/a.md:0", "generated").is_err());
    }

    #[test]
    fn matches_whole_names_only() {
        assert!(mentions("10.0.3.10\tdb1.lan db1", "db1"));
        assert!(!mentions("postgres-exporter", "postgres"));
        assert!(mentions("| postgres | x", "postgres"));
    }
}
