//! `--param NAME=VALUE` as given on the command line: values for a
//! profile's `{params}`.

use std::collections::BTreeMap;

/// Each item must be `NAME=VALUE` with a non-empty name.
pub fn parse(raw: &[String]) -> Result<BTreeMap<String, String>, String> {
    raw.iter()
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("--param {kv}: expected NAME=VALUE"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_equals_value() {
        let p = super::parse(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(p["b"], "x=y");
        assert!(super::parse(&["=1".into()]).is_err());
        assert!(super::parse(&["a".into()]).is_err());
    }
}
