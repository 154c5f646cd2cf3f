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
}
