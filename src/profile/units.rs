//! Small value types of the profile format that are written as text.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte count: an integer, or a string with a K/M/G/T suffix (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (digits, shift) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let shift = match c.to_ascii_uppercase() {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => return Err(format!("invalid size '{s}': suffix must be K, M, G or T")),
                };
                (&t[..i], shift)
            }
            _ => (t, 0),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size '{s}': expected e.g. 4096, \"64M\" or \"1G\""))?;
        n.checked_mul(1u64 << shift)
            .map(Size)
            .ok_or_else(|| format!("invalid size '{s}': too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, suffix) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
            if self.0 != 0 && self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{suffix}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: an integer or a string such as \"64M\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Bytes: an integer, or a string with a K/M/G/T suffix (powers of 1024).",
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+[KMGTkmgt]?$"}
            ]
        })
    }
}

/// A duration written the humantime way: "90s", "30m", "8h", "1h 30m".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration '{s}': {e} (e.g. \"30m\", \"8h\")"
                ))
            })
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration such as \"90s\", \"30m\", \"8h\" or \"1h 30m\".",
            "type": "string"
        })
    }
}

/// What seccomp does with a syscall outside the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fail the syscall with this errno.
    Errno(u32),
    KillProcess,
    Trap,
    Log,
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid seccomp action '{s}', expected one of \"kill-process\", \"trap\", \"log\", \"errno N\" (N a number or EPERM, EACCES, ENOSYS)"
            )
        };
        match s {
            "kill-process" => Ok(Action::KillProcess),
            "trap" => Ok(Action::Trap),
            "log" => Ok(Action::Log),
            _ => {
                let n = s.strip_prefix("errno ").ok_or_else(bad)?.trim();
                let code = match n {
                    "EPERM" => libc::EPERM as u32,
                    "EACCES" => libc::EACCES as u32,
                    "ENOSYS" => libc::ENOSYS as u32,
                    _ => n.parse().map_err(|_| bad())?,
                };
                // Errors are 1..=4095 to the kernel, and libseccomp, which
                // builds the filter, refuses 4095 itself.
                if code == 0 || code > 4094 {
                    return Err(format!(
                        "invalid seccomp action '{s}': errno must be 1..=4094"
                    ));
                }
                Ok(Action::Errno(code))
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Errno(n) => write!(f, "errno {n}"),
            Action::KillProcess => f.write_str("kill-process"),
            Action::Trap => f.write_str("trap"),
            Action::Log => f.write_str("log"),
        }
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Action {
    fn schema_name() -> Cow<'static, str> {
        "SeccompAction".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "kill-process, trap, log, or \"errno N\".",
            "type": "string",
            "pattern": "^(kill-process|trap|log|errno ([0-9]+|EPERM|EACCES|ENOSYS))$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!("64M".parse::<Size>(), Ok(Size(64 << 20)));
        assert_eq!("4096".parse::<Size>(), Ok(Size(4096)));
        assert_eq!(Size(1 << 30).to_string(), "1G");
        assert_eq!(Size(1000).to_string(), "1000");
        assert!("12Q".parse::<Size>().is_err());
        assert!("99999999999T".parse::<Size>().is_err());
    }

    #[test]
    fn actions_parse_and_print() {
        assert_eq!("errno 1".parse::<Action>(), Ok(Action::Errno(1)));
        assert_eq!("errno EPERM".parse::<Action>(), Ok(Action::Errno(1)));
        assert_eq!("kill-process".parse::<Action>(), Ok(Action::KillProcess));
        assert!("errno 0".parse::<Action>().is_err());
        // libseccomp, which builds the filter, refuses 4095.
        assert_eq!("errno 4094".parse::<Action>(), Ok(Action::Errno(4094)));
        assert!("errno 4095".parse::<Action>().is_err());
        assert!("kill".parse::<Action>().is_err());
        for a in [
            Action::Errno(38),
            Action::Trap,
            Action::Log,
            Action::KillProcess,
        ] {
            assert_eq!(a.to_string().parse::<Action>(), Ok(a));
        }
    }
}
