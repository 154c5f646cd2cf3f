//! Maps byte offsets and key paths of a TOML file to `line:col` and to the
//! table a person would look for ("[namespaces]", "[[mount]] #2").

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_string())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The span of the value (or, with `key = true`, the key) at `path`.
pub fn span_of(text: &str, path: &[Seg], key: bool) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable = root.get_ref();
    let mut found: Option<Range<usize>> = None;
    let mut i = 0;
    while i < path.len() {
        let Seg::Key(k) = &path[i] else { return None };
        let (kspan, value) = table.iter().find(|(name, _)| name.get_ref() == k)?;
        found = Some(if key { kspan.span() } else { value.span() });
        let mut v: &Spanned<DeValue> = value;
        i += 1;
        while let Some(Seg::Index(n)) = path.get(i) {
            let DeValue::Array(arr) = v.get_ref() else {
                return found;
            };
            v = arr.get(*n)?;
            found = Some(v.span());
            i += 1;
        }
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found
}

/// Describes where `offset` sits: the table holding the innermost key or
/// value containing it (`[namespaces]`, `[[mount]] #2`), and when the offset
/// is on a value, that value's key.
pub fn context_at(text: &str, offset: usize) -> (String, Option<String>) {
    let Ok(root) = DeTable::parse(text) else {
        return ("the file".into(), None);
    };
    let mut ctx = Vec::new();
    let key = walk(root.get_ref(), offset, &mut ctx).flatten();
    flatten_headers(&mut ctx);
    let table = if ctx.is_empty() {
        "the top level".into()
    } else {
        ctx.join(" ")
    };
    (table, key)
}

/// Pushes the tables leading to `offset` onto `ctx`. `Some(None)`: found on a
/// key; `Some(Some(k))`: found on the value of `k`.
fn walk(table: &DeTable, offset: usize, ctx: &mut Vec<String>) -> Option<Option<String>> {
    for (k, v) in table.iter() {
        if k.span().contains(&offset) {
            return Some(None);
        }
        match v.get_ref() {
            DeValue::Table(t) => {
                ctx.push(format!("[{}]", k.get_ref()));
                if let Some(found) = walk(t, offset, ctx) {
                    return Some(found);
                }
                ctx.pop();
            }
            DeValue::Array(arr) => {
                for (i, item) in arr.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        ctx.push(format!("[[{}]] #{}", k.get_ref(), i + 1));
                        if let Some(found) = walk(t, offset, ctx) {
                            return Some(found);
                        }
                        ctx.pop();
                    } else if item.span().contains(&offset) {
                        return Some(Some(k.get_ref().to_string()));
                    }
                }
            }
            _ if v.span().contains(&offset) => return Some(Some(k.get_ref().to_string())),
            _ => {}
        }
    }
    None
}

/// The bytes to blank so that the error at `offset` goes away and the rest
/// of the file still parses: a whole `[table]` or `[[table]]` section when
/// the offset is on its header line, else the smallest `key = value`
/// around it (multi-line arrays included).
pub fn item_around(text: &str, offset: usize) -> Option<Range<usize>> {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    if text[line_start..].trim_start().starts_with('[') {
        return Some(section_from(text, line_start));
    }
    // Inside a `[[mount]]`-like element, one bad field makes the element
    // incomplete: the whole element goes, or the next parse would report
    // a missing field the author never touched.
    let mut header = None;
    let mut at = 0;
    for line in text[..line_start].split_inclusive('\n') {
        if line.trim_start().starts_with('[') {
            header = Some((at, line.trim_start().starts_with("[[")));
        }
        at += line.len();
    }
    if let Some((start, true)) = header {
        return Some(section_from(text, start));
    }
    let root = DeTable::parse(text).ok()?;
    let mut best: Option<Range<usize>> = None;
    smallest(root.get_ref(), offset, &mut best);
    best
}

/// From the header line at `start` to the next header (or the end).
fn section_from(text: &str, start: usize) -> Range<usize> {
    let body = text[start..]
        .find('\n')
        .map_or(text.len(), |i| start + i + 1);
    let mut at = body;
    for line in text[body..].split_inclusive('\n') {
        if line.trim_start().starts_with('[') {
            return start..at;
        }
        at += line.len();
    }
    start..text.len()
}

fn smallest(table: &DeTable, offset: usize, best: &mut Option<Range<usize>>) {
    for (k, v) in table.iter() {
        let whole = k.span().start..v.span().end;
        if whole.start <= offset && offset < whole.end.max(whole.start + 1) {
            let better = best
                .as_ref()
                .is_none_or(|b| whole.end - whole.start < b.end - b.start);
            if better && whole.start < whole.end {
                *best = Some(whole.clone());
            }
        }
        match v.get_ref() {
            DeValue::Table(t) => smallest(t, offset, best),
            DeValue::Array(arr) => {
                for item in arr.iter() {
                    if let DeValue::Table(t) = item.get_ref() {
                        smallest(t, offset, best);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `[seccomp]` then `[groups]` reads better as `[seccomp.groups]`.
fn flatten_headers(ctx: &mut Vec<String>) {
    while ctx.len() >= 2 {
        let n = ctx.len();
        let (a, b) = (&ctx[n - 2], &ctx[n - 1]);
        if a.starts_with('[') && !a.starts_with("[[") && b.starts_with('[') && !b.starts_with("[[")
        {
            let merged = format!("[{}.{}]", &a[1..a.len() - 1], &b[1..b.len() - 1]);
            ctx.truncate(n - 2);
            ctx.push(merged);
        } else {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "a = 1\n[namespaces]\nnett = true\n[[mount]]\ntype = \"bind\"\n[[mount]]\nsrc = \"x\"\n[seccomp.groups]\nio = [\"read\"]\n";

    #[test]
    fn lines_and_columns_are_one_based() {
        assert_eq!(line_col(DOC, 0), (1, 1));
        assert_eq!(line_col(DOC, DOC.find("nett").unwrap()), (3, 1));
        assert_eq!(line_col("é = 1\nx", 3), (1, 3));
    }

    #[test]
    fn spans_follow_key_paths() {
        let s = span_of(DOC, &["namespaces".into(), "nett".into()], true).unwrap();
        assert_eq!(&DOC[s], "nett");
        let s = span_of(DOC, &["mount".into(), 1.into(), "src".into()], false).unwrap();
        assert_eq!(&DOC[s], "\"x\"");
        assert!(span_of(DOC, &["nope".into()], false).is_none());
    }

    #[test]
    fn the_item_around_an_offset_is_a_key_value_or_a_whole_section() {
        let r = item_around(DOC, DOC.find("nett").unwrap()).unwrap();
        assert_eq!(&DOC[r], "nett = true");
        let r = item_around(DOC, DOC.find("namespaces").unwrap()).unwrap();
        assert_eq!(&DOC[r], "[namespaces]\nnett = true\n");
        let r = item_around(DOC, DOC.find("src").unwrap()).unwrap();
        assert_eq!(&DOC[r], "[[mount]]\nsrc = \"x\"\n");
        let r = item_around(DOC, DOC.find("io").unwrap()).unwrap();
        assert_eq!(&DOC[r], "io = [\"read\"]");
    }

    #[test]
    fn context_names_the_table() {
        let at = |s: &str| context_at(DOC, DOC.find(s).unwrap());
        assert_eq!(at("nett"), ("[namespaces]".into(), None));
        assert_eq!(at("src"), ("[[mount]] #2".into(), None));
        assert_eq!(at("\"x\""), ("[[mount]] #2".into(), Some("src".into())));
        assert_eq!(context_at(DOC, 0), ("the top level".into(), None));
        assert_eq!(at("io"), ("[seccomp.groups]".into(), None));
    }
}
