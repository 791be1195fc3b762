//! `ferry status`: the node at a glance, from `GET /status/info`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use super::client::Api;
use super::fmt;

pub fn run(api: &Api, json: bool) -> Result<ExitCode> {
    let info: Value = api.get("/status/info")?.json()?;
    if json {
        println!("{info}");
        return Ok(ExitCode::SUCCESS);
    }
    for (label, value) in summary(&info) {
        println!("{label:<13}  {value}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The lines a person wants, from ferryd's `/status/info` fields (a few
/// alternative names are accepted); fields it does not have are left out.
fn summary(info: &Value) -> Vec<(&'static str, String)> {
    let find = |keys: &[&str]| keys.iter().find_map(|k| lookup(info, k)).filter(|v| !v.is_null());
    let mut out = Vec::new();
    if let Some(v) = find(&["node_id", "nodeid"]) {
        out.push(("node id", plain(v)));
    }
    if let Some(v) = find(&["bundles"]) {
        out.push(("bundles", count_or_len(v)));
    }
    let store_bytes = find(&["store_bytes", "store.bytes"]).and_then(Value::as_u64);
    let store_bundles = find(&["store_bundles", "store.bundles"]).and_then(Value::as_u64);
    match (store_bytes, store_bundles) {
        (Some(b), Some(n)) => out.push(("store", format!("{} in {n} bundles", fmt::bytes(b)))),
        (Some(b), None) => out.push(("store", fmt::bytes(b))),
        _ => {}
    }
    if let Some(v) = find(&["registrations", "endpoints"]) {
        out.push(("registrations", list_or_count(v)));
    }
    if let Some(v) = find(&["peers"]) {
        let mut peers = list_or_count(v);
        if let Some(up) = find(&["peers_connected"]).and_then(Value::as_u64) {
            peers = format!("{peers} configured, {up} connected");
        }
        out.push(("peers", peers));
    }
    if let Some(v) = find(&["router"]) {
        out.push(("router", plain(v)));
    }
    if let Some(v) = find(&["uptime_secs", "uptime_s", "uptime"]) {
        out.push(("uptime", v.as_u64().map(|s| fmt::duration(Duration::from_secs(s))).unwrap_or_else(|| plain(v))));
    }
    if let Some(v) = find(&["version"]) {
        out.push(("version", plain(v)));
    }
    if let Some(Value::Object(stats)) = find(&["stats"]) {
        let counters: Vec<String> =
            stats.iter().filter_map(|(k, v)| v.as_u64().map(|n| format!("{} {n}", k.replace('_', " ")))).collect();
        if !counters.is_empty() {
            out.push(("counters", counters.join(", ")));
        }
    }
    out
}

/// `a.b` looks into nested objects.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn count_or_len(v: &Value) -> String {
    match v {
        Value::Array(a) => a.len().to_string(),
        other => plain(other),
    }
}

/// A list as "n: a, b, c"; an object of lists by its keys; a number as is.
fn list_or_count(v: &Value) -> String {
    match v {
        Value::Array(a) if a.is_empty() => "none".to_owned(),
        Value::Array(a) => format!("{}: {}", a.len(), a.iter().map(describe_item).collect::<Vec<_>>().join(", ")),
        Value::Object(m) if m.is_empty() => "none".to_owned(),
        Value::Object(m) => format!("{}: {}", m.len(), m.keys().cloned().collect::<Vec<_>>().join(", ")),
        other => plain(other),
    }
}

/// A list item: a string, or an object named by its most telling field.
fn describe_item(v: &Value) -> String {
    for key in ["eid", "node_id", "endpoint", "name", "id"] {
        if let Some(s) = v.get(key) {
            return plain(s);
        }
    }
    plain(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_nested_and_flat_fields() {
        let info = serde_json::json!({
            "node_id": "dtn://n/", "bundles": 3, "store_bundles": 3, "store_bytes": 2048,
            "registrations": ["dtn://n/incoming"], "peers": 0, "peers_connected": 0, "uptime_secs": 61,
            "stats": {"received": 2, "reports_sent": 1},
        });
        let s = summary(&info);
        let get = |k: &str| s.iter().find(|(l, _)| *l == k).map(|(_, v)| v.clone());
        assert_eq!(get("node id").as_deref(), Some("dtn://n/"));
        assert_eq!(get("bundles").as_deref(), Some("3"));
        assert_eq!(get("store").as_deref(), Some("2.0 KiB in 3 bundles"));
        assert_eq!(get("registrations").as_deref(), Some("1: dtn://n/incoming"));
        assert_eq!(get("peers").as_deref(), Some("0 configured, 0 connected"));
        assert_eq!(get("counters").as_deref(), Some("received 2, reports sent 1"));
        assert_eq!(get("uptime").as_deref(), Some("1m 1s"));
    }
}
