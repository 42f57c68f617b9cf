//! Escaping per output format, chosen by the template's file extension.
//!
//! minijinja's defaults are wrong for us (HTML escaping for `.xml`, JSON for `.yaml`,
//! nothing for `.sh`), so every format is mapped explicitly here. Line-oriented configs
//! (`.cfg`, `.conf`) have no general escaping syntax; they rely on the model having
//! rejected every dangerous character at load time.

use std::borrow::Cow;

use minijinja::AutoEscape;

/// The escaping of a template, from its name without the final `.j2`.
pub fn auto_escape_for(name: &str) -> AutoEscape {
    let name = name.strip_suffix(".j2").unwrap_or(name);
    match name.rsplit('.').next().unwrap_or("") {
        "yaml" | "yml" => AutoEscape::Custom(Cow::Borrowed("yaml")),
        "xml" | "svg" => AutoEscape::Custom(Cow::Borrowed("xml")),
        "sh" => AutoEscape::Custom(Cow::Borrowed("sh")),
        "md" => AutoEscape::Custom(Cow::Borrowed("md")),
        "html" | "htm" => AutoEscape::Html,
        // A JavaScript data file (the docs' search index): values as JSON string literals.
        "json" | "js" => AutoEscape::Custom(Cow::Borrowed("json")),
        _ => AutoEscape::None,
    }
}

/// A YAML scalar: a JSON string literal is a valid double-quoted YAML scalar, and it
/// avoids YAML 1.1 surprises (`no`, `on`, `0755`). On top of JSON's escapes, characters
/// that YAML does not allow raw in a stream (DEL, the C1 controls, U+FEFF inside a
/// document, U+FFFE/U+FFFF) and the YAML 1.1 line breaks (U+2028, U+2029) are written
/// as `\uXXXX`, which is valid JSON as well, so a parser gives back exactly `s`.
pub fn yaml(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// XML character data or attribute value. Tab, newline and carriage return become
/// character references, so attribute-value and end-of-line normalisation cannot change
/// them; characters XML 1.0 cannot carry at all (other C0 controls, U+FFFE, U+FFFF)
/// become U+FFFD, so the document is always well-formed. Site values never hold either
/// (the model rejects control characters); this is the second line of defence.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// One POSIX shell word: bare when it is made of safe characters, single-quoted otherwise.
pub fn sh(s: &str) -> String {
    if sh_bare(s) { s.to_string() } else { format!("'{}'", s.replace('\'', "'\\''")) }
}

/// Whether `s` is a shell word as it stands: not empty, and only characters no shell
/// treats specially.
fn sh_bare(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b))
}

/// Markdown inline text: characters that would start markup are backslash-escaped.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\`*|<>[]".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `apply(kind, s)` would give back `s` unchanged: the common case, which the
/// renderer then writes without building a copy. Conservative: `false` when unsure.
pub fn is_plain(kind: &str, s: &str) -> bool {
    match kind {
        "md" => !s.bytes().any(|b| matches!(b, b'\\' | b'`' | b'*' | b'|' | b'<' | b'>' | b'[' | b']')),
        "xml" => s.bytes().all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'')),
        "sh" => sh_bare(s),
        _ => false,
    }
}

/// Applies a custom escape by name.
pub fn apply(kind: &str, s: &str) -> Option<String> {
    Some(match kind {
        "yaml" => yaml(s),
        "xml" => xml(s),
        "sh" => sh(s),
        "md" => md(s),
        "json" => yaml(s),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_escaping_by_extension() {
        assert_eq!(auto_escape_for("compose/stack.yml.j2"), AutoEscape::Custom("yaml".into()));
        assert_eq!(auto_escape_for("pfsense/config.xml.j2"), AutoEscape::Custom("xml".into()));
        assert_eq!(auto_escape_for("bootstrap/bootstrap.sh.j2"), AutoEscape::Custom("sh".into()));
        assert_eq!(auto_escape_for("haproxy/haproxy.cfg.j2"), AutoEscape::None);
    }

    #[test]
    fn shell_words_round_trip_through_sh() {
        for s in ["plain", "two words", "it's", "$(rm -rf /)", "a\"b", ""] {
            let out =
                std::process::Command::new("/bin/sh").arg("-c").arg(format!("printf %s {}", sh(s))).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s, "{s:?}");
        }
    }

    #[test]
    fn xml_and_yaml_and_md_escape() {
        assert_eq!(xml("a<b&'c\""), "a&lt;b&amp;&apos;c&quot;");
        assert_eq!(yaml("no"), "\"no\"");
        for s in ["", "a\"b\\c", "\n\r\t\u{8}\u{c}\u{1}\u{1f}", "é🦀", "\u{7f}\u{85}\u{2028}\u{feff}\u{ffff}"] {
            assert_eq!(serde_json::from_str::<String>(&yaml(s)).unwrap(), s, "yaml() is also valid JSON");
        }
        for s in ["", "a\"b\\c", "\n\r\t\u{8}\u{c}\u{1}\u{1f}", "é🦀"] {
            assert_eq!(yaml(s), serde_json::to_string(s).unwrap(), "same as JSON where JSON is valid YAML");
        }
        assert_eq!(xml("a\tb\nc\rd\u{1}"), "a&#9;b&#10;c&#13;d\u{fffd}");
        assert_eq!(md("a|b<c>"), "a\\|b\\<c\\>");
    }

    #[test]
    fn plain_means_unchanged() {
        let samples =
            ["", "plain", "a b", "a|b", "x<y", "it's", "é", "a\tb", "a.b-c_d:1", "[x]", "`x`", "a&b", "\u{1}"];
        for kind in ["md", "xml", "sh", "yaml", "json"] {
            for s in samples {
                if is_plain(kind, s) {
                    assert_eq!(apply(kind, s).unwrap(), s, "{kind} {s:?}");
                }
            }
        }
        assert!(is_plain("md", "web-01 10.0.0.1") && is_plain("xml", "web-01") && is_plain("sh", "/etc/hosts"));
    }
}
