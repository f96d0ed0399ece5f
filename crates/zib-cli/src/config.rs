//! `zib server` / `zib node` configuration: a TOML file, then `ZIB_<KEY>` environment
//! overrides for every key. The keys are the fields of the role's settings struct
//! ([`zib_server::config::ServerSettings`], [`zib_node::NodeConfig`]); this module
//! knows none of them. They are documented in `docs/operations.md`, which the tests
//! below check against the structs.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// Reads `path` (if given) over the defaults, then applies `ZIB_<KEY>` variables.
/// The keys, and how a variable is parsed (number, bool or text), come from how
/// `T::default()` serialises.
pub fn load<T: DeserializeOwned + Serialize + Default>(path: Option<&Path>) -> Result<T> {
    let defaults = serde_json::to_value(T::default()).context("serialising defaults")?;
    let Value::Object(defaults) = defaults else {
        bail!("configuration defaults are not a table");
    };
    let mut merged: Map<String, Value> = defaults.clone();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        let value = serde_json::to_value(table).context("converting TOML")?;
        if let Value::Object(map) = value {
            merged.extend(map);
        }
    }
    for (key, default) in &defaults {
        let var = format!("ZIB_{}", key.to_ascii_uppercase());
        if let Ok(raw) = std::env::var(&var) {
            let value = match default {
                Value::Number(_) => Value::Number(
                    raw.trim()
                        .parse::<u64>()
                        .with_context(|| format!("{var} must be a whole number, got {raw:?}"))?
                        .into(),
                ),
                Value::Bool(_) => Value::Bool(
                    raw.trim()
                        .parse()
                        .with_context(|| format!("{var} must be true or false"))?,
                ),
                _ => Value::String(raw),
            };
            merged.insert(key.clone(), value);
        }
    }
    serde_json::from_value(Value::Object(merged)).context("invalid configuration")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use zib_node::NodeConfig;
    use zib_server::config::ServerSettings;

    use super::*;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "zone = \"eu-1\"\ncapacity_bytes = 1000\n").unwrap();
        // A key no other test reads, so the process-wide environment is safe to touch.
        std::env::set_var("ZIB_HEARTBEAT_INTERVAL_SECS", "2");
        let c: NodeConfig = load(Some(&path)).unwrap();
        std::env::remove_var("ZIB_HEARTBEAT_INTERVAL_SECS");
        assert_eq!(c.zone.as_deref(), Some("eu-1"));
        assert_eq!(c.capacity_bytes, 1000);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(c.server_url, "http://127.0.0.1:7070");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        assert!(load::<ServerSettings>(Some(&path)).is_err());
    }

    #[test]
    fn durations_and_schedules_read_in_their_units() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "s3_complete_wait_ms = 250\nwebhook_retention_days = 2\n\
             webhook_retry_schedule = \"1s,2m\"\ndatabase = \"/x/meta.db\"\n",
        )
        .unwrap();
        let s: ServerSettings = load(Some(&path)).unwrap();
        assert_eq!(s.s3_complete_wait, Duration::from_millis(250));
        assert_eq!(s.webhook_retention, Duration::from_secs(2 * 24 * 3600));
        assert_eq!(
            s.webhook_retry_schedule,
            [Duration::from_secs(1), Duration::from_secs(120)]
        );
        assert_eq!(s.database_path, Path::new("/x/meta.db"));
    }

    /// `docs/operations.md` documents every key of both roles and nothing else, with
    /// the default the code has. Keys and defaults come from serialising the
    /// settings' `Default` (so they cannot drift from the TOML names); every field's
    /// `///` line is required by `#![deny(missing_docs)]` in its config module.
    ///
    /// A table row counts for a role when it sits under a heading naming the role
    /// (`` `zib server` `` or `` `zib node` ``) and starts with a code span: its
    /// first cell holds one or more keys, its second their defaults as code spans in
    /// the same order (a default without one, e.g. "— (required)", is for keys whose
    /// default is unset or empty).
    #[test]
    fn operations_md_matches_the_settings_structs() {
        let docs = include_str!("../../../docs/operations.md");
        let documented = documented_keys(docs);
        let mut problems = Vec::new();
        for (role, defaults) in [
            ("zib server", defaults_of::<ServerSettings>()),
            ("zib node", defaults_of::<NodeConfig>()),
        ] {
            let empty = BTreeMap::new();
            let docs = documented.get(role).unwrap_or(&empty);
            for (key, default) in &defaults {
                match docs.get(key) {
                    None => problems.push(format!("`{role}` key `{key}` has no row")),
                    Some(doc) if default.is_some() && doc != default => problems.push(format!(
                        "`{role}` key `{key}`: docs say default {doc:?}, code has {default:?}"
                    )),
                    Some(_) => {}
                }
            }
            for key in docs.keys().filter(|k| !defaults.contains_key(*k)) {
                problems.push(format!("`{role}` row `{key}` is no key (stale?)"));
            }
        }
        assert!(
            problems.is_empty(),
            "docs/operations.md is out of step with the settings structs:\n{}",
            problems.join("\n")
        );
    }

    /// Key → default as the docs write it; `None` when unset or empty (required
    /// secrets, values derived at start).
    fn defaults_of<T: Serialize + Default>() -> BTreeMap<String, Option<String>> {
        let Value::Object(map) = serde_json::to_value(T::default()).unwrap() else {
            panic!("settings serialise to a table");
        };
        map.into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) => Some(s),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    other => panic!("key {key}: no table form for {other}"),
                };
                (key, text)
            })
            .collect()
    }

    /// Role → key → documented default (`None` when the cell has no code span).
    fn documented_keys(docs: &str) -> BTreeMap<&'static str, BTreeMap<String, Option<String>>> {
        let mut out: BTreeMap<&'static str, BTreeMap<String, Option<String>>> = BTreeMap::new();
        let mut role = None;
        for line in docs.lines() {
            if line.starts_with('#') {
                role = ["zib server", "zib node"]
                    .into_iter()
                    .find(|r| line.contains(&format!("`{r}`")));
                continue;
            }
            let (Some(role), Some(row)) = (role, line.strip_prefix("| `")) else {
                continue;
            };
            let row = format!("`{row}");
            let cells: Vec<&str> = row.split('|').collect();
            let keys = code_spans(cells[0]);
            let defaults = code_spans(cells.get(1).copied().unwrap_or(""));
            for (i, key) in keys.into_iter().enumerate() {
                let default = defaults.get(i).cloned();
                out.entry(role).or_default().insert(key, default);
            }
        }
        out
    }

    fn code_spans(cell: &str) -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }
}
