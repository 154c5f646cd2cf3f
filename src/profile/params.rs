//! `--param NAME=VALUE` as given on the command line: values for a
//! profile's `{params}`.

use std::collections::BTreeMap;

/// Each item must be `NAME=VALUE` with a non-empty name that the profile
/// declares in `[params]`: a mistyped name would otherwise leave the
/// declared default in place without a word.
pub fn parse(
    raw: &[String],
    declared: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    raw.iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("--param {kv}: expected NAME=VALUE"))?;
            if !declared.contains_key(k) {
                let names: Vec<&str> = declared.keys().map(String::as_str).collect();
                return Err(format!(
                    "--param {kv}: the profile declares no parameter '{k}' ({})",
                    if names.is_empty() {
                        "it has none".to_string()
                    } else {
                        format!("its parameters: {}", names.join(", "))
                    }
                ));
            }
            // Parameters name places: where the jail binds from, what
            // Landlock allows. A path that climbs or is relative would
            // point past what the profile means.
            let climbs = std::path::Path::new(v)
                .components()
                .any(|c| c == std::path::Component::ParentDir);
            if !v.starts_with('/') || climbs || v.contains(['\n', '\0']) {
                return Err(format!(
                    "--param {kv}: the value must be an absolute path without '..'"
                ));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn name_equals_value_of_a_declared_parameter() {
        let declared: BTreeMap<String, String> =
            [("a".into(), "0".into()), ("b".into(), "0".into())].into();
        let p = super::parse(&["a=/1".into(), "b=/x=y".into()], &declared).unwrap();
        assert_eq!(p["b"], "/x=y");
        assert!(super::parse(&["=/1".into()], &declared).is_err());
        assert!(super::parse(&["a".into()], &declared).is_err());
        let typo = super::parse(&["c=/1".into()], &declared).unwrap_err();
        assert!(typo.contains("'c'") && typo.contains("a, b"), "{typo}");
        // A place: absolute, and not climbing out of what it names.
        for bad in ["a=rel", "a=/x/../../etc", "a=/x\ny"] {
            let e = super::parse(&[bad.into()], &declared).unwrap_err();
            assert!(e.contains("absolute path without '..'"), "{bad}: {e}");
        }
        let none = super::parse(&["a=/1".into()], &BTreeMap::new()).unwrap_err();
        assert!(none.contains("it has none"), "{none}");
    }
}
