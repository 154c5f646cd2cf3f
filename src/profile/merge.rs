//! How `extends` combines files: tables merge key by key, lists append,
//! anything else in the later file replaces the earlier value.

use toml::{Table, Value};

pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (Some(Value::Array(b)), Value::Array(o)) => b.extend(o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Lists of `over` that repeat part of the list they extend but leave some
/// of it out, as if to allow less, which `extends` cannot do: lists only
/// add. One line each, naming the key and what stays from the parents.
pub fn narrowings(base: &Table, over: &Table, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in over {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match (base.get(key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => out.extend(narrowings(b, o, &path)),
            (Some(Value::Array(b)), Value::Array(o)) => {
                let kept: Vec<String> = b
                    .iter()
                    .filter(|v| !o.contains(v))
                    .map(|v| v.to_string())
                    .collect();
                if !kept.is_empty() && b.iter().any(|v| o.contains(v)) {
                    out.push(format!(
                        "{path} repeats part of the list it extends, as if to allow less, but lists only add: {} stay; to allow less, copy the profile instead of extending it",
                        kept.join(", ")
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn tables_merge_lists_append_scalars_replace() {
        let mut base = t("a = 1\nl = [1]\n[x]\nk = 1\nm = 2\n");
        merge(&mut base, t("a = 2\nl = [2]\n[x]\nk = 3\n"));
        assert_eq!(base, t("a = 2\nl = [1, 2]\n[x]\nk = 3\nm = 2\n"));
    }

    #[test]
    fn a_list_written_to_allow_less_is_named() {
        let base = t("[s]\nfam = [\"UNIX\", \"INET\"]\nallow = [\"@process\"]\n");
        // Repeats UNIX, leaves INET out: meant to narrow.
        let n = narrowings(&base, &t("[s]\nfam = [\"UNIX\"]\n"), "");
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(
            n[0].starts_with("s.fam repeats") && n[0].contains("\"INET\" stay"),
            "{n:?}"
        );
        // Only adds: nothing to say.
        assert!(narrowings(&base, &t("[s]\nallow = [\"@io\"]\n"), "").is_empty());
        assert!(narrowings(&base, &t("[s]\nfam = [\"UNIX\", \"INET\", \"X\"]\n"), "").is_empty());
    }
}
