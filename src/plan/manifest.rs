//! What ctm owns in a generation: every file's path, kind, hash and owner.
//! The plan compares it with what is on disk; the state store keeps one
//! per generation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compile::{Artifact, Artifacts, Content, Owner};
use crate::fs::{self, Entry, EntryFields, EntryKey};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestEntry {
    #[serde(flatten)]
    pub entry: Entry,
    pub owner: Owner,
}

/// Read in one pass (`fs::EntryFields`): a plan reads every entry of the
/// current generation's manifest.
impl<'de> Deserialize<'de> for ManifestEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ManifestEntry, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ManifestEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a manifest entry: a map with its kind and owner")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ManifestEntry, A::Error> {
                let mut fields = EntryFields::default();
                let mut owner = None;
                while let Some(key) = map.next_key::<EntryKey>()? {
                    match key {
                        EntryKey::Owner => fs::once(&mut owner, "owner", &mut map)?,
                        key => fields.take(key, &mut map)?,
                    }
                }
                Ok(ManifestEntry {
                    entry: fields.finish()?,
                    owner: owner.ok_or_else(|| serde::de::Error::missing_field("owner"))?,
                })
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Every file ctm owns in a generation: root-relative path → what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(deserialize_with = "sorted_map")]
    pub files: BTreeMap<String, ManifestEntry>,
}

/// A map read whole, then built at once: inserting each key as it comes
/// searches the map for it, comparing long paths that share most of
/// their bytes, while a map built from its keys in order (as they are
/// written) compares each key once.
fn sorted_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Visitor<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(entry) = map.next_entry::<String, V>()? {
                entries.push(entry);
            }
            Ok(entries.into_iter().collect())
        }
    }
    d.deserialize_map(Visitor(std::marker::PhantomData))
}

impl Manifest {
    /// The manifest as a generation stores it: compact JSON and a
    /// newline, the form that [`Self::from_json`] reads fastest.
    pub fn to_json(&self) -> Vec<u8> {
        // Sized for the usual entry (about 200 bytes) so that the buffer
        // is not grown and copied a dozen times.
        let mut bytes = Vec::with_capacity(256 * self.files.len());
        // Strings, integers and sorted maps: nothing that can fail.
        serde_json::to_writer(&mut bytes, self).expect("a manifest always serializes to JSON");
        bytes.push(b'\n');
        bytes
    }

    /// A manifest read from its JSON: as [`Self::to_json`] writes it
    /// (compact, fields in order, paths ascending, no escapes) by a reader
    /// of that form alone, else by serde. A plan reads the current
    /// manifest every time, and serde took 13 ms of CPU for the 33,000
    /// entries of 5,000 containers; the two read the same text to the
    /// same manifest (`tests`).
    pub fn from_json(text: &str) -> serde_json::Result<Manifest> {
        match Compact(text.as_bytes()).manifest() {
            Some(manifest) => Ok(manifest),
            None => serde_json::from_str(text),
        }
    }

    pub fn of(artifacts: &Artifacts) -> Manifest {
        let all: Vec<(&String, &Artifact)> = artifacts.files.iter().collect();
        // Hashing is most of it, and an apply waits for it on its
        // compiling thread: a large host's files are hashed in runs, one
        // a core (a file is a few microseconds, a thread tens).
        let runs = crate::cores::in_runs(&all, 512, 4, |run| {
            run.iter()
                .map(|(path, a)| {
                    let entry = ManifestEntry {
                        entry: entry_of(a),
                        owner: a.owner.clone(),
                    };
                    ((*path).clone(), entry)
                })
                .collect::<Vec<_>>()
        });
        // The runs are in path order, one after another: `collect`
        // builds the map from the sorted sequence in one pass.
        Manifest {
            files: runs.into_iter().flatten().collect(),
        }
    }
}

/// Reads a manifest in exactly the form [`Manifest::to_json`] gives it;
/// `None` at the first byte that is not of that form.
struct Compact<'a>(&'a [u8]);

impl<'a> Compact<'a> {
    fn manifest(mut self) -> Option<Manifest> {
        self.literal("{\"files\":{")?;
        let mut files: Vec<(String, ManifestEntry)> = Vec::new();
        let mut previous: Option<&str> = None;
        if self.literal("}").is_none() {
            loop {
                let path = self.string()?;
                // In order and once each, as serde writes a sorted map.
                if previous.is_some_and(|p| p >= path) {
                    return None;
                }
                previous = Some(path);
                self.literal(":")?;
                files.push((path.to_string(), self.entry()?));
                if self.literal(",").is_none() {
                    self.literal("}")?;
                    break;
                }
            }
        }
        self.literal("}")?;
        // Blank space after the value, as JSON allows.
        let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        self.0.iter().all(blank).then(|| Manifest {
            files: files.into_iter().collect(),
        })
    }

    fn entry(&mut self) -> Option<ManifestEntry> {
        self.literal("{\"kind\":")?;
        let entry = match self.string()? {
            "file" => {
                self.literal(",\"sha256\":")?;
                let sha256 = self.string()?.to_string();
                self.literal(",\"mode\":")?;
                Entry::File {
                    sha256,
                    mode: self.number()?,
                }
            }
            "symlink" => {
                self.literal(",\"target\":")?;
                Entry::Symlink {
                    target: self.string()?.to_string(),
                }
            }
            _ => return None,
        };
        self.literal(",\"owner\":{\"kind\":")?;
        let owner = match self.string()? {
            "firewall" => Owner::Firewall,
            "host" => Owner::Host,
            kind => {
                self.literal(",\"name\":")?;
                let name = self.string()?;
                match kind {
                    "container" => Owner::Container(crate::model::Name::parse(name).ok()?),
                    "network" => Owner::Network(crate::model::Name::parse(name).ok()?),
                    "tunnel" => Owner::Tunnel(crate::model::IfName::parse(name).ok()?),
                    _ => return None,
                }
            }
        };
        self.literal("}}")?;
        Some(ManifestEntry { entry, owner })
    }

    fn literal(&mut self, expected: &str) -> Option<()> {
        self.0 = self.0.strip_prefix(expected.as_bytes())?;
        Some(())
    }

    /// A string without escapes or control characters (serde has the
    /// rules for those).
    fn string(&mut self) -> Option<&'a str> {
        let rest = self.0.strip_prefix(b"\"")?;
        let end = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[end] != b'"' {
            return None;
        }
        self.0 = &rest[end + 1..];
        // The text came from a `&str`, and a quote is never inside a
        // character: this is UTF-8 still, checked again for safety.
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// A `u32` in decimal, as serde writes it: no sign, no leading zero.
    fn number(&mut self) -> Option<u32> {
        let digits = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let (number, rest) = self.0.split_at(digits);
        if digits == 0 || (digits > 1 && number[0] == b'0') {
            return None;
        }
        self.0 = rest;
        std::str::from_utf8(number).ok()?.parse().ok()
    }
}

/// What an artifact is once written.
pub fn entry_of(artifact: &Artifact) -> Entry {
    match &artifact.content {
        Content::File { text, mode } => Entry::File {
            sha256: fs::sha256_hex(text.as_bytes()),
            mode: *mode,
        },
        Content::Symlink { target } => Entry::Symlink {
            target: target.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest with every kind of entry and owner.
    fn sample() -> Manifest {
        let mut m = Manifest::default();
        let file = |sha: &str, mode| Entry::File {
            sha256: sha.repeat(32),
            mode,
        };
        let owners = [
            Owner::Container(crate::model::Name::parse("web").unwrap()),
            Owner::Network(crate::model::Name::parse("lan").unwrap()),
            Owner::Tunnel(crate::model::IfName::parse("gre-a").unwrap()),
            Owner::Firewall,
            Owner::Host,
        ];
        for (i, owner) in owners.into_iter().enumerate() {
            m.files.insert(
                format!("etc/f{i}"),
                ManifestEntry {
                    entry: file("ab", 0o644),
                    owner: owner.clone(),
                },
            );
            m.files.insert(
                format!("etc/l{i}"),
                ManifestEntry {
                    entry: Entry::Symlink {
                        target: format!("/t/{i}"),
                    },
                    owner,
                },
            );
        }
        m
    }

    #[test]
    fn a_large_manifest_hashed_in_runs_is_the_one_of_one_loop() {
        let mut artifacts = Artifacts::default();
        for i in 0..3000 {
            let content = if i % 7 == 0 {
                Content::Symlink {
                    target: format!("/target/{i}"),
                }
            } else {
                Content::File {
                    text: format!("file {i}\n"),
                    mode: 0o644,
                }
            };
            artifacts.files.insert(
                format!("etc/{i:05}"),
                Artifact {
                    owner: Owner::Host,
                    content,
                },
            );
        }
        let one_loop: BTreeMap<String, ManifestEntry> = artifacts
            .files
            .iter()
            .map(|(path, a)| {
                let entry = ManifestEntry {
                    entry: entry_of(a),
                    owner: a.owner.clone(),
                };
                (path.clone(), entry)
            })
            .collect();
        assert_eq!(Manifest::of(&artifacts).files, one_loop);
    }

    #[test]
    fn a_manifest_reads_back_as_written_compact_or_pretty() {
        let m = sample();
        for text in [
            serde_json::to_string(&m).unwrap(),
            serde_json::to_string_pretty(&m).unwrap() + "\n",
        ] {
            assert_eq!(
                serde_json::from_str::<Manifest>(&text).unwrap(),
                m,
                "{text}"
            );
            // Cut short anywhere: an error, never a panic or half a manifest.
            for cut in 0..text.trim_end().len() {
                assert!(serde_json::from_str::<Manifest>(&text[..cut]).is_err());
            }
        }
        // Keys out of order (a hand-edited file) read the same.
        let reversed = format!(
            "{{\"files\": {{{}}}}}",
            m.files
                .iter()
                .rev()
                .map(|(p, e)| format!(
                    "{}: {}",
                    serde_json::to_string(p).unwrap(),
                    serde_json::to_string(e).unwrap()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(serde_json::from_str::<Manifest>(&reversed).unwrap(), m);
    }

    #[test]
    fn the_compact_reader_reads_what_serde_writes_and_nothing_else() {
        let m = sample();
        assert_eq!(Compact(&m.to_json()).manifest(), Some(m.clone()));
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(Compact(text.as_bytes()).manifest(), Some(m.clone()));
        let empty = serde_json::to_string(&Manifest::default()).unwrap();
        assert_eq!(
            Compact(empty.as_bytes()).manifest(),
            Some(Manifest::default())
        );
        // Other forms are serde's: the same manifest either way.
        let mut odd = m.clone();
        odd.files.get_mut("etc/l0").unwrap().entry = Entry::Symlink {
            target: "/a \"quoted\"\n\\target".into(),
        };
        odd.files.get_mut("etc/f1").unwrap().entry = Entry::Absent;
        let odd_text = serde_json::to_string(&odd).unwrap();
        for text in [
            serde_json::to_string_pretty(&m).unwrap(),
            text.replace("\"mode\":420", "\"mode\":420.0"),
            odd_text,
        ] {
            assert_eq!(Compact(text.as_bytes()).manifest(), None, "{text}");
            assert_eq!(
                Manifest::from_json(&text).ok(),
                serde_json::from_str::<Manifest>(&text).ok(),
                "{text}"
            );
        }
        // A byte changed anywhere: the compact reader reads the same as
        // serde, or leaves it to serde. It never takes what serde refuses
        // (a bad name, an out-of-range mode), nor reads it otherwise.
        for at in 0..text.len() {
            for byte in [b'"', b'\\', b'}', b',', b'0', b'9', b'A', b' ', 0x01] {
                let mut garbled = text.clone().into_bytes();
                garbled[at] = byte;
                let Ok(garbled) = String::from_utf8(garbled) else {
                    continue;
                };
                if let Some(read) = Compact(garbled.as_bytes()).manifest() {
                    assert_eq!(
                        Some(read),
                        serde_json::from_str::<Manifest>(&garbled).ok(),
                        "{garbled}"
                    );
                }
            }
        }
        for bad in [
            text.replace("\"name\":\"web\"", "\"name\":\"Web Server\""),
            text.replace("\"mode\":420", "\"mode\":4294967296"),
            text.replace("\"mode\":420", "\"mode\":0420"),
        ] {
            assert_eq!(Compact(bad.as_bytes()).manifest(), None, "{bad}");
        }
    }

    #[test]
    fn the_manifest_of_many_artifacts_hashes_each_once() {
        let mut artifacts = Artifacts::default();
        for i in 0..2000 {
            artifacts.files.insert(
                format!("etc/{i:05}"),
                Artifact {
                    owner: Owner::Host,
                    content: Content::File {
                        text: format!("text {i}\n"),
                        mode: 0o644,
                    },
                },
            );
        }
        let m = Manifest::of(&artifacts);
        assert_eq!(m.files.len(), 2000);
        for (path, a) in &artifacts.files {
            assert_eq!(m.files[path].entry, entry_of(a));
        }
    }

    #[test]
    fn entries_read_back_whatever_the_order_of_their_keys() {
        let entries = [
            Entry::Absent,
            Entry::Other,
            Entry::File {
                sha256: "ab".repeat(32),
                mode: 0o600,
            },
            Entry::Symlink {
                target: "/x".into(),
            },
        ];
        for entry in entries {
            let text = serde_json::to_string(&entry).unwrap();
            assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), entry);
            let m = ManifestEntry {
                entry,
                owner: Owner::Firewall,
            };
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<ManifestEntry>(&text).unwrap(), m);
        }
        let shuffled =
            r#"{"mode": 420, "owner": {"kind": "host"}, "sha256": "x", "kind": "file", "new": 1}"#;
        assert_eq!(
            serde_json::from_str::<ManifestEntry>(shuffled).unwrap(),
            ManifestEntry {
                entry: Entry::File {
                    sha256: "x".into(),
                    mode: 0o644
                },
                owner: Owner::Host,
            }
        );
        assert!(serde_json::from_str::<Entry>(r#"{"kind": "file", "mode": 420}"#).is_err());
        // A key twice, or a value of the wrong type: an error, never a guess.
        for bad in [
            r#"{"kind": "file", "kind": "symlink", "target": "/x"}"#,
            r#"{"kind": "file", "sha256": "a", "sha256": "b", "mode": 420, "owner": {"kind": "host"}}"#,
            r#"{"kind": "file", "sha256": "a", "mode": 420, "owner": {"kind": "host"}, "owner": {"kind": "host"}}"#,
            r#"{"kind": "file", "sha256": 1, "mode": 420, "owner": {"kind": "host"}}"#,
            r#"{"kind": "file", "sha256": "a", "mode": -1, "owner": {"kind": "host"}}"#,
            r#"{"kind": "nothing", "owner": {"kind": "host"}}"#,
            r#"["file", "a", 420]"#,
            r#"{"kind": "file", "sha256": "a", "mode": 420, "owner": {"kind": "host"}"#,
        ] {
            assert!(serde_json::from_str::<ManifestEntry>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ManifestEntry>(r#"{"kind": "absent"}"#).is_err());
    }
}
