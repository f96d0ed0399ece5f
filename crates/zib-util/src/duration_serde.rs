//! Serde adapters that write a [`Duration`] as a whole number of one unit, for keys
//! named after their unit (`upload_expiry_secs = 3600`, `s3_complete_wait_ms = 500`).
//! Use as `#[serde(rename = "x_secs", with = "zib_util::duration_serde::secs")]`.
//! Writing truncates to whole units.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Generates a `serialize`/`deserialize` pair for one unit.
macro_rules! unit {
    ($name:ident, $doc:literal, $to:expr, $from:expr) => {
        #[doc = $doc]
        pub mod $name {
            use super::*;

            pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
                let to: fn(&Duration) -> u64 = $to;
                s.serialize_u64(to(d))
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
                let from: fn(u64) -> Duration = $from;
                u64::deserialize(d).map(from)
            }
        }
    };
}

unit!(
    millis,
    "Whole milliseconds.",
    |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    Duration::from_millis
);
unit!(
    secs,
    "Whole seconds.",
    Duration::as_secs,
    Duration::from_secs
);
unit!(
    days,
    "Whole days of 86 400 s.",
    |d| d.as_secs() / DAY,
    |n| Duration::from_secs(n.saturating_mul(DAY))
);

const DAY: u64 = 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "millis")]
        a: Duration,
        #[serde(with = "secs")]
        b: Duration,
        #[serde(with = "days")]
        c: Duration,
    }

    #[test]
    fn round_trips_in_whole_units() {
        let t = T {
            a: Duration::from_millis(1500),
            b: Duration::from_secs(90),
            c: Duration::from_secs(7 * DAY),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"a":1500,"b":90,"c":7}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
    }
}
