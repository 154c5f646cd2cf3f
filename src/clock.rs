//! Wall-clock time as pairjail stores it (Unix seconds) and prints it
//! (RFC 3339, UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch; a clock set before 1970 reads as 0.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2026-11-21T18:00:00Z`.
pub fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(epoch)).to_string()
}

/// Serde for Unix seconds written as RFC 3339 (what every `--json` output
/// shows); reading takes either, so an older broker's integers still parse.
pub mod as_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Seconds(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Seconds(n) => Ok(n),
            Either::Text(t) => super::parse_rfc3339(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// The same for an optional time.
pub mod as_rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::as_rfc3339")] u64);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// Unix seconds of an RFC 3339 time.
pub fn parse_rfc3339(t: &str) -> Result<u64, String> {
    humantime::parse_rfc3339_weak(t)
        .ok()
        .or_else(|| t.parse::<jiff::Timestamp>().ok().map(SystemTime::from))
        .and_then(|st| st.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| format!("not an RFC 3339 time: {t}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_round_trip_as_rfc3339_and_read_integers_too() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct T {
            #[serde(with = "super::as_rfc3339")]
            at: u64,
            #[serde(with = "super::as_rfc3339_opt")]
            until: Option<u64>,
        }
        let t = T {
            at: 1_800_000_000,
            until: Some(1_800_000_060),
        };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(
            text,
            r#"{"at":"2027-01-15T08:00:00Z","until":"2027-01-15T08:01:00Z"}"#
        );
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), t);
        let old: T = serde_json::from_str(r#"{"at":1800000000,"until":null}"#).unwrap();
        assert_eq!(old.until, None);
    }
}
