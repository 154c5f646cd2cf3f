//! JSON lines that a terminal shows as they are: what pairjail writes for
//! people to read with `cat`, `grep` or `tail` (the audit log, recordings)
//! holds strings a guest chose.

/// A JSON line whose strings hold no character that changes how a
/// terminal or an editor shows the text around it: C1 controls (U+009B
/// starts a CSI in some terminals), bidi overrides (U+202E shows text
/// backwards), zero-width characters and line separators are written
/// `\uXXXX`. The string is the same to any JSON reader; `cat`, `grep` or
/// `tail` of the file show nothing a guest typed to rewrite the review.
pub fn escaped<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut buf = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut buf, Escaping,
    ))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// [`escaped`], pretty-printed: what pairjail prints with `--json`, where
/// strings may come from a file someone else wrote (`audit verify --json`
/// quotes a line's text) and land on the host's terminal.
pub fn pretty<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string_pretty(value)?;
    // Outside its strings JSON is ASCII, so every such character is in a
    // string, where `\uXXXX` is the same character.
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if hides_text(c) {
            out.push_str(&json_escape(c));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `\uXXXX` for `c`, as a UTF-16 surrogate pair beyond the BMP (the tag
/// characters U+E0000 to U+E007F): JSON has no longer escape.
fn json_escape(c: char) -> String {
    let mut units = [0u16; 2];
    c.encode_utf16(&mut units)
        .iter()
        .map(|u| format!("\\u{u:04x}"))
        .collect()
}

struct Escaping;

impl serde_json::ser::Formatter for Escaping {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if hides_text(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                writer.write_all(json_escape(c).as_bytes())?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// A C1 control, or what hides text (see `terminal::hides_text`).
pub fn hides_text(c: char) -> bool {
    crate::terminal::is_c1(c) || crate::terminal::hides_text(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_hides_text_is_escaped_and_reads_back_the_same() {
        let text = "a\u{9d}52;c;eA==\u{9c}b\u{202e}c\u{200b}d\u{2028}e\u{1b}f\u{ad}g\u{e0041}h\u{3164}i\u{fffa}";
        let line = escaped(&text).unwrap();
        assert!(line.is_ascii(), "{line:?}");
        assert_eq!(serde_json::from_str::<String>(&line).unwrap(), text);
        // Plain text, and text beyond ASCII that hides nothing, as it is.
        assert_eq!(escaped(&"héllo wörld").unwrap(), "\"héllo wörld\"");
        let v = serde_json::json!({ "what": text, "list": [text] });
        let shown = pretty(&v).unwrap();
        assert!(shown.is_ascii(), "{shown}");
        assert!(shown.contains('\n'), "not pretty: {shown}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&shown).unwrap(),
            v
        );
    }
}
