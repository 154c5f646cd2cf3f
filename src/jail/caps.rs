//! Step 9: capabilities dropped in all five sets.

use caps::{CapSet, CapsHashSet};

use super::error::JailError;
use super::sys::{Sys, SysResult};
use crate::profile::names;

pub fn keep_set(names_: &[String]) -> Result<CapsHashSet, JailError> {
    names_
        .iter()
        .map(|n| {
            names::capability(n)
                .ok_or_else(|| JailError::msg("capabilities", format!("unknown capability {n}")))
        })
        .collect()
}

/// Bounding first (it needs CAP_SETPCAP, which is about to go), then
/// ambient, inheritable, effective, permitted. Kept capabilities are raised
/// into ambient last so they survive exec for a non-root uid.
pub fn drop_bounding(sys: &dyn Sys, keep: &CapsHashSet) -> SysResult {
    for cap in caps::all() {
        if !keep.contains(&cap) {
            sys.drop_bounding(cap)?;
        }
    }
    Ok(())
}

/// After a uid change with KEEPCAPS: effective = permitted again.
pub fn raise_effective(sys: &dyn Sys) -> SysResult {
    let permitted = caps::read(None, CapSet::Permitted)
        .map_err(|e| JailError::msg("capget(permitted)", e.to_string()))?;
    sys.set_caps(CapSet::Effective, &permitted)
}

pub fn drop_rest(sys: &dyn Sys, keep: &CapsHashSet) -> SysResult {
    sys.set_caps(CapSet::Ambient, &CapsHashSet::new())?;
    sys.set_caps(CapSet::Inheritable, keep)?;
    sys.set_caps(CapSet::Effective, keep)?;
    sys.set_caps(CapSet::Permitted, keep)?;
    if !keep.is_empty() {
        sys.set_caps(CapSet::Ambient, keep)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::sys::Recording;

    #[test]
    fn everything_is_dropped_in_order() {
        let rec = Recording::default();
        let keep = CapsHashSet::new();
        drop_bounding(&rec, &keep).unwrap();
        drop_rest(&rec, &keep).unwrap();
        let calls = rec.calls.into_inner();
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("drop-bounding"))
                .count(),
            caps::all().len()
        );
        assert!(calls.contains(&"drop-bounding CAP_SYS_ADMIN".to_string()));
        let tail: Vec<_> = calls.iter().skip(caps::all().len()).cloned().collect();
        assert_eq!(
            tail,
            [
                "capset Ambient []",
                "capset Inheritable []",
                "capset Effective []",
                "capset Permitted []"
            ]
        );
    }

    #[test]
    fn kept_capabilities_survive_and_become_ambient() {
        let rec = Recording::default();
        let keep = keep_set(&["CAP_NET_BIND_SERVICE".into()]).unwrap();
        drop_bounding(&rec, &keep).unwrap();
        drop_rest(&rec, &keep).unwrap();
        let calls = rec.calls.into_inner();
        assert!(!calls.contains(&"drop-bounding CAP_NET_BIND_SERVICE".to_string()));
        assert_eq!(
            calls.last().unwrap(),
            "capset Ambient [CAP_NET_BIND_SERVICE]"
        );
        assert!(keep_set(&["CAP_NOPE".into()]).is_err());
    }
}
