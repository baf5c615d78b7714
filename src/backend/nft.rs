//! nftables through Debian's `nft` binary: loading ctm's ruleset (one
//! kernel transaction; the file itself deletes and redefines `table inet
//! ctm`) and reading the live table back as JSON.
//!
//! Why the binary and not a crate: `nftables` (the crate) also shells out
//! to `nft -j`, and the netlink-level crates are GPL or unfinished
//! (docs/live-host.md). `nft` is found and version-checked at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::SystemError;

pub const TABLE: &str = "inet ctm";
/// nftables 1.0 is the oldest release ctm is tested against (Debian 12
/// ships 1.0.6); `inet` NAT with explicit families needs nothing newer.
pub const MIN_VERSION: (u32, u32) = (1, 0);

/// What `table inet ctm` holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTable {
    /// Chain → number of rules.
    pub chains: BTreeMap<String, usize>,
    /// SHA-256 of the table's JSON listing without handles: equal for two
    /// loads of the same ruleset, different after any edit by hand.
    pub listing_sha256: String,
}

pub struct Nft {
    binary: PathBuf,
}

fn error(what: impl Into<String>, why: impl Into<String>) -> SystemError {
    SystemError {
        what: what.into(),
        why: why.into(),
    }
}

impl Nft {
    /// Finds `nft` and checks its version.
    pub fn find() -> Result<(Nft, String), SystemError> {
        let binary = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                error(
                    "finding nft",
                    "nft is not installed; ctm loads its firewall and NAT rules with it (apt-get install nftables)",
                )
            })?;
        let nft = Nft { binary };
        let version = nft.version()?;
        Ok((nft, version))
    }

    fn version(&self) -> Result<String, SystemError> {
        let out = Command::new(&self.binary)
            .arg("--version")
            .output()
            .map_err(|e| {
                error(
                    format!("running {} --version", self.binary.display()),
                    e.to_string(),
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // "nftables v1.0.6 (Lester Gooch #5)"
        let number = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix('v'))
            .ok_or_else(|| error("reading nft's version", format!("cannot read {text:?}")))?;
        let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if found < MIN_VERSION {
            return Err(error(
                "checking nft's version",
                format!(
                    "{text} is too old; ctm needs nftables {}.{} or newer",
                    MIN_VERSION.0, MIN_VERSION.1
                ),
            ));
        }
        Ok(number.to_string())
    }

    /// Loads a ruleset file as one transaction.
    pub fn load(&self, path: &Path) -> Result<(), SystemError> {
        let out = Command::new(&self.binary)
            .arg("-f")
            .arg(path)
            .output()
            .map_err(|e| error(format!("running nft -f {}", path.display()), e.to_string()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(error(
                format!("loading {}", path.display()),
                format!("nft said: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ))
        }
    }

    /// Removes ctm's table (when no generation has a ruleset any more).
    pub fn delete_table(&self) -> Result<(), SystemError> {
        if self.table()?.is_none() {
            return Ok(());
        }
        let out = Command::new(&self.binary)
            .args(["delete", "table", "inet", "ctm"])
            .output()
            .map_err(|e| error("running nft delete table inet ctm", e.to_string()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(error(
                "deleting table inet ctm",
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    /// The live table, or `None` if it does not exist.
    pub fn table(&self) -> Result<Option<LiveTable>, SystemError> {
        let out = Command::new(&self.binary)
            .args(["-j", "list", "table", "inet", "ctm"])
            .output()
            .map_err(|e| error("running nft -j list table inet ctm", e.to_string()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(error("listing table inet ctm", stderr.trim().to_string()));
        }
        let json: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| error("reading nft's JSON listing", e.to_string()))?;
        Ok(Some(summarize(&json)))
    }
}

/// Counts rules per chain and hashes the listing without its handles and
/// metainfo (which carry nothing about what the rules do).
pub fn summarize(json: &Value) -> LiveTable {
    let mut chains: BTreeMap<String, usize> = BTreeMap::new();
    let mut items = Vec::new();
    for item in json
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if item.get("metainfo").is_some() {
            continue;
        }
        if let Some(name) = item
            .get("chain")
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
        {
            chains.entry(name.to_string()).or_insert(0);
        }
        if let Some(name) = item
            .get("rule")
            .and_then(|r| r.get("chain"))
            .and_then(Value::as_str)
        {
            *chains.entry(name.to_string()).or_insert(0) += 1;
        }
        items.push(canonical(item));
    }
    let text = Value::Array(items).to_string();
    LiveTable {
        chains,
        listing_sha256: crate::fs::sha256_hex(text.as_bytes()),
    }
}

/// The value with object keys sorted and every `handle` removed.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "handle")
                .map(|(k, v)| (k, canonical(v)))
                .collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_metainfo_do_not_change_the_hash() {
        let a = serde_json::json!({"nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "ctm", "handle": 3}},
            {"chain": {"family": "inet", "table": "ctm", "name": "forward", "handle": 1}},
            {"rule": {"family": "inet", "table": "ctm", "chain": "forward", "handle": 4, "expr": [{"accept": null}]}}
        ]});
        let b = serde_json::json!({"nftables": [
            {"metainfo": {"version": "1.0.9", "json_schema_version": 1}},
            {"table": {"handle": 9, "name": "ctm", "family": "inet"}},
            {"chain": {"family": "inet", "table": "ctm", "name": "forward", "handle": 2}},
            {"rule": {"family": "inet", "table": "ctm", "chain": "forward", "handle": 7, "expr": [{"accept": null}]}}
        ]});
        let (sa, sb) = (summarize(&a), summarize(&b));
        assert_eq!(sa, sb);
        assert_eq!(sa.chains, BTreeMap::from([("forward".to_string(), 1)]));
    }

    #[test]
    fn an_edited_rule_changes_the_hash() {
        let a = serde_json::json!({"nftables": [
            {"rule": {"chain": "forward", "expr": [{"accept": null}]}}
        ]});
        let b = serde_json::json!({"nftables": [
            {"rule": {"chain": "forward", "expr": [{"drop": null}]}}
        ]});
        assert_ne!(summarize(&a).listing_sha256, summarize(&b).listing_sha256);
        assert_eq!(summarize(&a).chains, summarize(&b).chains);
    }
}
