//! The forms for common edits: add or change a network or a container by
//! changing the host file's text in place. KDL goes through the `kdl`
//! crate's document model and TOML through `toml_edit`; both keep every
//! comment and every byte of formatting they are not asked to change.
//! The result is not validated here: the editor validates it like any
//! other text, with the same validator as `ctm check`.

use kdl::{KdlDocument, KdlNode, KdlValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{self, Format, Node, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Network,
    Container,
    /// Names only, for the form's choices: templates and images have no
    /// form of their own.
    Template,
    Image,
}

impl Kind {
    fn node(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Container => "container",
            Kind::Template => "template",
            Kind::Image => "image",
        }
    }
}

/// A network as the form shows it; empty strings are "not set".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkForm {
    pub name: String,
    pub bridge: String,
    pub ipv4: String,
    pub ipv4_nat: bool,
    pub ipv6: String,
    pub ipv6_nat: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerForm {
    pub name: String,
    /// The template (`from`).
    pub template: String,
    pub image: String,
    pub network: String,
    pub ipv4: String,
    pub ipv6: String,
    pub forwards: Vec<ForwardForm>,
    pub binds: Vec<BindForm>,
    /// `limits memory=…`: a size with a unit (`512M`).
    pub memory: String,
    /// `limits cpus=…`: a number of CPUs (`1.5`).
    pub cpus: String,
    pub environment: Vec<EnvForm>,
    pub authorized_keys: Vec<String>,
    pub docker: bool,
    pub nested: bool,
    /// Started at boot (the default).
    pub autostart: bool,
    /// `root`: how the root file system is made (`auto`, `snapshot`,
    /// `reflink`, `copy`, `overlay`); empty: not written (`auto`).
    pub root: String,
}

impl Default for ContainerForm {
    fn default() -> ContainerForm {
        ContainerForm {
            name: String::new(),
            template: String::new(),
            image: String::new(),
            network: String::new(),
            ipv4: String::new(),
            ipv6: String::new(),
            forwards: Vec::new(),
            binds: Vec::new(),
            memory: String::new(),
            cpus: String::new(),
            environment: Vec::new(),
            authorized_keys: Vec::new(),
            docker: false,
            nested: false,
            autostart: true,
            root: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BindForm {
    pub source: String,
    /// Empty: the same path as the source.
    pub target: String,
    pub read_only: bool,
    pub idmap: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvForm {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardForm {
    pub protocol: String,
    pub host: u16,
    pub container: u16,
    /// `loopback=#false` is kept; the default is not written.
    #[serde(default = "yes")]
    pub loopback: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", content = "values", rename_all = "lowercase")]
pub enum Edit {
    Network(NetworkForm),
    Container(Box<ContainerForm>),
}

fn nonempty(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

fn arg_str(node: &Node, i: usize) -> String {
    node.arg(i)
        .and_then(|v| v.value.as_str())
        .unwrap_or_default()
        .to_string()
}

fn prop_bool(node: &Node, key: &str) -> bool {
    node.prop(key)
        .and_then(|v| v.value.as_bool())
        .unwrap_or(false)
}

fn prop_str(node: &Node, key: &str) -> String {
    node.prop(key)
        .and_then(|v| v.value.as_str())
        .unwrap_or_default()
        .to_string()
}

/// The names of every network or container in the text, and the form
/// values of the one called `name` (none when there is no such one).
/// Read through the same syntax tree as the validator, so it works for
/// both syntaxes and for text with errors elsewhere.
pub fn read(text: &str, format: Format, kind: Kind, name: &str) -> Result<Value, String> {
    let (doc, _) = config::parse(&Source::new("host", text, format));
    let nodes: Vec<&Node> = doc.nodes_named(kind.node()).collect();
    let names: Vec<String> = nodes.iter().map(|n| arg_str(n, 0)).collect();
    let found = nodes.iter().find(|n| arg_str(n, 0) == name);
    let Some(node) = found.filter(|_| matches!(kind, Kind::Network | Kind::Container)) else {
        return Ok(json!({ "names": names, "form": null }));
    };
    let has = |child: &str| node.child(child).is_some();
    let child_arg = |child: &str| node.child(child).map(|c| arg_str(c, 0)).unwrap_or_default();
    let form = match kind {
        Kind::Network => json!(NetworkForm {
            name: name.to_string(),
            bridge: child_arg("bridge"),
            ipv4: child_arg("ipv4"),
            ipv4_nat: node.child("ipv4").is_some_and(|c| c.child("nat").is_some()),
            ipv6: child_arg("ipv6"),
            ipv6_nat: node.child("ipv6").is_some_and(|c| c.child("nat").is_some()),
        }),
        Kind::Template | Kind::Image => Value::Null,
        Kind::Container => {
            let net = node.child("network");
            json!(ContainerForm {
                name: name.to_string(),
                template: child_arg("from"),
                image: child_arg("image"),
                network: child_arg("network"),
                ipv4: net.map(|n| prop_str(n, "ipv4")).unwrap_or_default(),
                ipv6: net.map(|n| prop_str(n, "ipv6")).unwrap_or_default(),
                forwards: node
                    .children_named("forward")
                    .filter_map(|f| {
                        let port = |k: &str| {
                            f.prop(k)
                                .and_then(|v| v.value.as_integer())
                                .and_then(|i| u16::try_from(i).ok())
                        };
                        Some(ForwardForm {
                            protocol: arg_str(f, 0),
                            host: port("host")?,
                            container: port("container")?,
                            loopback: f.prop("loopback").and_then(|v| v.value.as_bool())
                                != Some(false),
                        })
                    })
                    .collect(),
                binds: node
                    .children_named("bind")
                    .map(|b| BindForm {
                        source: arg_str(b, 0),
                        target: arg_str(b, 1),
                        read_only: prop_bool(b, "read-only"),
                        idmap: prop_bool(b, "idmap"),
                    })
                    .collect(),
                memory: node
                    .child("limits")
                    .map(|l| prop_str(l, "memory"))
                    .unwrap_or_default(),
                cpus: node
                    .child("limits")
                    .and_then(|l| l.prop("cpus"))
                    .map(|v| match &v.value {
                        config::Value::String(s) => s.clone(),
                        config::Value::Invalid => String::new(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default(),
                environment: node
                    .child("environment")
                    .map(|e| {
                        e.props
                            .iter()
                            .map(|(k, v)| EnvForm {
                                name: k.value.clone(),
                                value: v.value.as_str().unwrap_or_default().to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                autostart: node
                    .child("autostart")
                    .and_then(|a| a.arg(0))
                    .and_then(|v| v.value.as_bool())
                    .unwrap_or(true),
                authorized_keys: node
                    .child("ssh")
                    .map(|s| {
                        s.children_named("authorized-key")
                            .map(|k| arg_str(k, 0))
                            .collect()
                    })
                    .unwrap_or_default(),
                docker: has("docker"),
                nested: has("nested"),
                root: child_arg("root"),
            })
        }
    };
    Ok(json!({ "names": names, "form": form }))
}

/// The children of a network or container that its form manages, as
/// paths below it.
fn managed(kind: Kind) -> &'static [&'static [&'static str]] {
    match kind {
        Kind::Network => &[&["bridge"], &["ipv4"], &["ipv6"]],
        Kind::Container => &[
            &["from"],
            &["image"],
            &["network"],
            &["forward"],
            &["bind"],
            &["limits"],
            &["environment"],
            &["docker"],
            &["nested"],
            &["autostart"],
            &["root"],
            &["ssh", "authorized-key"],
        ],
        Kind::Template | Kind::Image => &[],
    }
}

/// One node as ctm reads it: its name, values and children, not where or
/// how they are written (spacing, quotes, shorthand, the order of
/// properties, KDL or TOML).
fn canonical(node: &Node) -> String {
    let args: Vec<String> = node.args.iter().map(|a| format!("{:?}", a.value)).collect();
    let mut props: Vec<String> = node
        .props
        .iter()
        .map(|(k, v)| format!("{}={:?}", k.value, v.value))
        .collect();
    props.sort();
    let children: Vec<String> = node.children.iter().map(canonical).collect();
    format!("{} {args:?} {props:?} {children:?}", node.name.value)
}

/// What the nodes at `path` below `node` mean; `autostart #true`, the
/// default, means the same as nothing. Of a container's networks only the
/// first is the form's: the others are neither shown nor touched.
fn meaning(node: Option<&Node>, path: &[&str]) -> Vec<String> {
    let mut nodes: Vec<&Node> = node.into_iter().collect();
    for part in path {
        nodes = nodes
            .into_iter()
            .flat_map(|n| n.children_named(part))
            .collect();
    }
    if path == ["network"] {
        nodes.truncate(1);
    }
    nodes
        .into_iter()
        .filter(|n| {
            !(n.name.value == "autostart"
                && n.args.len() == 1
                && n.arg(0).and_then(|v| v.value.as_bool()) == Some(true))
        })
        .map(canonical)
        .collect()
}

/// The network or container `name` of `text`, as ctm reads it.
fn parsed(text: &str, format: Format, kind: Kind, name: &str) -> Option<Node> {
    let (doc, _) = config::parse(&Source::new("host", text, format));
    doc.nodes_named(kind.node())
        .find(|n| arg_str(n, 0) == name)
        .cloned()
}

/// The managed paths whose meaning differs between `name` in `text` and
/// the form's values written out alone (`fresh`, in the same syntax):
/// the only ones an edit touches, so that what the form shows unchanged
/// stays byte for byte as it was written.
fn changed(
    text: &str,
    fresh: &str,
    format: Format,
    kind: Kind,
    name: &str,
) -> Vec<&'static [&'static str]> {
    let old = parsed(text, format, kind, name);
    let new = parsed(fresh, format, kind, name);
    managed(kind)
        .iter()
        .copied()
        .filter(|path| meaning(old.as_ref(), path) != meaning(new.as_ref(), path))
        .collect()
}

/// `cpus` as the host file writes it: a number when it is one; anything
/// else as the text it is, for the validator to say what is wrong.
enum Cpus<'a> {
    Integer(i64),
    Float(f64),
    Text(&'a str),
}

fn cpus(text: &str) -> Option<Cpus<'_>> {
    let text = nonempty(text)?;
    Some(if let Ok(i) = text.parse() {
        Cpus::Integer(i)
    } else if let Ok(f) = text
        .parse::<f64>()
        .map_err(drop)
        .and_then(|f| if f.is_finite() { Ok(f) } else { Err(()) })
    {
        Cpus::Float(f)
    } else {
        Cpus::Text(text)
    })
}

/// The text with the edit made, everything else kept as it was.
pub fn apply(text: &str, format: Format, edit: &Edit) -> Result<String, String> {
    let name = match edit {
        Edit::Network(n) => &n.name,
        Edit::Container(c) => &c.name,
    };
    if nonempty(name).is_none() {
        return Err("give a name".into());
    }
    match format {
        Format::Kdl => kdl_edit::apply(text, edit),
        Format::Toml => toml_edit_form::apply(text, edit),
    }
}

/// One child of a node as the form wants it: `None` removes it.
type Want = Option<String>;

mod kdl_edit {
    use super::*;

    /// A KDL value as KDL text: a string (bare when KDL allows), a number.
    pub fn repr(value: impl Into<KdlValue>) -> String {
        value.into().to_string()
    }

    fn quoted(s: &str) -> String {
        // Strings are always quoted, as in the examples, even where KDL 2
        // would allow a bare identifier.
        let plain = repr(s);
        if plain.starts_with('"') || plain.starts_with('#') {
            plain
        } else {
            format!("\"{plain}\"")
        }
    }

    /// The lines of a node's children, as KDL text, from the form.
    fn network_children(n: &NetworkForm) -> Vec<(&'static str, Want)> {
        let subnet = |addr: &str, nat: bool| {
            nonempty(addr).map(|a| {
                let mut line = quoted(a);
                if nat {
                    line.push_str(" { nat; }");
                }
                line
            })
        };
        vec![
            ("bridge", nonempty(&n.bridge).map(quoted)),
            ("ipv4", subnet(&n.ipv4, n.ipv4_nat)),
            ("ipv6", subnet(&n.ipv6, n.ipv6_nat)),
        ]
    }

    fn container_children(c: &ContainerForm) -> Vec<(&'static str, Want)> {
        let network = nonempty(&c.network).map(|net| {
            let mut line = quoted(net);
            for (key, value) in [("ipv4", &c.ipv4), ("ipv6", &c.ipv6)] {
                if let Some(v) = nonempty(value) {
                    line.push_str(&format!(" {key}={}", quoted(v)));
                }
            }
            line
        });
        let mut limits = Vec::new();
        if let Some(memory) = nonempty(&c.memory) {
            limits.push(format!("memory={}", quoted(memory)));
        }
        match cpus(&c.cpus) {
            Some(Cpus::Integer(i)) => limits.push(format!("cpus={i}")),
            Some(Cpus::Float(f)) => limits.push(format!("cpus={}", repr(f))),
            Some(Cpus::Text(t)) => limits.push(format!("cpus={}", quoted(t))),
            None => {}
        }
        let environment: Vec<String> = c
            .environment
            .iter()
            .filter(|e| nonempty(&e.name).is_some())
            .map(|e| format!("{}={}", repr(e.name.trim()), quoted(&e.value)))
            .collect();
        vec![
            ("from", nonempty(&c.template).map(quoted)),
            ("image", nonempty(&c.image).map(quoted)),
            ("network", network),
            ("limits", (!limits.is_empty()).then(|| limits.join(" "))),
            (
                "environment",
                (!environment.is_empty()).then(|| environment.join(" ")),
            ),
            ("docker", c.docker.then(String::new)),
            ("nested", c.nested.then(String::new)),
            ("autostart", (!c.autostart).then(|| "#false".to_string())),
            ("root", nonempty(&c.root).map(quoted)),
        ]
    }

    fn forwards(c: &ContainerForm) -> Vec<String> {
        c.forwards
            .iter()
            .map(|f| {
                format!(
                    "{} host={} container={}{}",
                    quoted(&f.protocol),
                    f.host,
                    f.container,
                    if f.loopback { "" } else { " loopback=#false" }
                )
            })
            .collect()
    }

    fn binds(c: &ContainerForm) -> Vec<String> {
        c.binds
            .iter()
            .filter_map(|b| {
                let mut line = quoted(nonempty(&b.source)?);
                if let Some(target) = nonempty(&b.target) {
                    line.push_str(&format!(" {}", quoted(target)));
                }
                if b.read_only {
                    line.push_str(" read-only=#true");
                }
                if b.idmap {
                    line.push_str(" idmap=#true");
                }
                Some(line)
            })
            .collect()
    }

    fn keys(c: &ContainerForm) -> Vec<String> {
        c.authorized_keys
            .iter()
            .filter_map(|k| nonempty(k))
            .map(quoted)
            .collect()
    }

    fn line(name: &str, rest: &str) -> String {
        if rest.is_empty() {
            name.to_string()
        } else {
            format!("{name} {rest}")
        }
    }

    /// A new top-level node, written out whole.
    pub fn new_block(kind: Kind, name: &str, edit: &Edit) -> String {
        let mut out = format!("{} {} {{\n", kind.node(), quoted(name));
        let children = match edit {
            Edit::Network(n) => network_children(n),
            Edit::Container(c) => container_children(c),
        };
        for (child, want) in children {
            if let Some(rest) = want {
                out.push_str(&format!("    {}\n", line(child, &rest)));
            }
        }
        if let Edit::Container(c) = edit {
            for (name, lines) in [("forward", forwards(c)), ("bind", binds(c))] {
                for l in lines {
                    out.push_str(&format!("    {name} {l}\n"));
                }
            }
            let keys = keys(c);
            if !keys.is_empty() {
                out.push_str("    ssh {\n");
                for k in keys {
                    out.push_str(&format!("        authorized-key {k}\n"));
                }
                out.push_str("    }\n");
            }
        }
        out.push_str("}\n");
        out
    }

    fn parse_node(text: &str) -> Result<KdlNode, String> {
        let doc = KdlDocument::parse(text).map_err(|e| format!("internal: {e}"))?;
        doc.nodes()
            .first()
            .cloned()
            .ok_or_else(|| "internal: empty node".to_string())
    }

    /// The indentation of a node: what follows the last newline before it.
    fn indentation(node: &KdlNode) -> String {
        node.format()
            .map(|f| f.leading.rsplit('\n').next().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// The indentation children of `parent` use, or one level deeper than
    /// `parent_indent` when it has none yet.
    fn child_indent(children: &KdlDocument, parent_indent: &str) -> String {
        children
            .nodes()
            .first()
            .map(indentation)
            .unwrap_or_else(|| format!("{parent_indent}    "))
    }

    fn fresh(text: &str, indent: &str) -> Result<KdlNode, String> {
        let mut node = parse_node(text)?;
        if let Some(f) = node.format_mut() {
            f.leading = indent.to_string();
            f.terminator = "\n".to_string();
            f.trailing = String::new();
            f.before_terminator = String::new();
        }
        Ok(node)
    }

    /// Removes the child at `i`, keeping the line break that opened the
    /// block when the removed child carried it.
    fn remove_at(children: &mut KdlDocument, i: usize) {
        let removed = children.nodes_mut().remove(i);
        let leading = removed
            .format()
            .map(|f| f.leading.clone())
            .unwrap_or_default();
        if let Some(next) = children.nodes_mut().get_mut(i)
            && let Some(f) = next.format_mut()
            && leading.contains('\n')
            && !f.leading.contains('\n')
        {
            f.leading = leading;
        }
    }

    /// Gives `old` the values of `new`, keeping its comments, its place
    /// and (when they stay the same) the way its values are written.
    fn set_entries(old: &mut KdlNode, new: &KdlNode) {
        let values = |n: &KdlNode| -> Vec<(Option<String>, KdlValue)> {
            n.entries()
                .iter()
                .map(|e| (e.name().map(|k| k.value().to_string()), e.value().clone()))
                .collect()
        };
        if values(old) != values(new) {
            *old.entries_mut() = new.entries().to_vec();
        }
    }

    /// Makes the (single) child `name` hold `want`: its values and
    /// children are replaced, its comments and position kept; a missing
    /// child is added at the end, an unwanted one removed.
    fn set_child(
        children: &mut KdlDocument,
        name: &str,
        want: &Want,
        indent: &str,
    ) -> Result<(), String> {
        let at = children
            .nodes()
            .iter()
            .position(|n| n.name().value() == name);
        match (at, want) {
            (Some(i), Some(rest)) => {
                let new = parse_node(&line(name, rest))?;
                let old = &mut children.nodes_mut()[i];
                set_entries(old, &new);
                // The block (`{ nat }`) stays as written, comments and
                // all, unless its nodes change.
                let names = |n: &KdlNode| -> Vec<String> {
                    n.children()
                        .map(|c| {
                            c.nodes()
                                .iter()
                                .map(|n| n.name().value().to_string())
                                .collect()
                        })
                        .unwrap_or_default()
                };
                if names(old) != names(&new) {
                    *old.children_mut() = new.children().cloned();
                    if let (Some(f), Some(nf)) = (old.format_mut(), new.format()) {
                        f.before_children = nf.before_children.clone();
                    }
                }
            }
            (None, Some(rest)) => {
                let node = fresh(&line(name, rest), indent)?;
                children.nodes_mut().push(node);
            }
            (Some(i), None) => remove_at(children, i),
            (None, None) => {}
        }
        Ok(())
    }

    /// Makes the children `name` one per line of `lines`: those there are
    /// take the lines in order, each keeping its place and comments; the
    /// rest are removed, or added after the last one (or at the end).
    fn set_list(
        children: &mut KdlDocument,
        name: &str,
        lines: &[String],
        indent: &str,
    ) -> Result<(), String> {
        let at: Vec<usize> = children
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| n.name().value() == name)
            .map(|(i, _)| i)
            .collect();
        for (&i, l) in at.iter().zip(lines) {
            let new = parse_node(&line(name, l))?;
            set_entries(&mut children.nodes_mut()[i], &new);
        }
        for &i in at.iter().skip(lines.len()).rev() {
            remove_at(children, i);
        }
        let after = at.last().map_or(children.nodes().len(), |i| i + 1);
        for (next, l) in (after..).zip(lines.iter().skip(at.len())) {
            children
                .nodes_mut()
                .insert(next, fresh(&line(name, l), indent)?);
        }
        Ok(())
    }

    const NOT_KDL: &str = "the host file is not valid KDL; fix its syntax (see the diagnostics) before using the forms";

    pub fn apply(text: &str, edit: &Edit) -> Result<String, String> {
        let (kind, name) = match edit {
            Edit::Network(n) => (Kind::Network, n.name.trim()),
            Edit::Container(c) => (Kind::Container, c.name.trim()),
        };
        // The crate's parser recurses without bound on hostile text; ctm's
        // own reader says first whether it is safe to hand over.
        crate::config::kdl::check_for_kdl_crate(text).map_err(|d| match d.code {
            "ctm::kdl-syntax" => NOT_KDL.to_string(),
            _ => format!(
                "the host file cannot be edited with the forms: {}; edit its text instead",
                d.message
            ),
        })?;
        let mut doc = KdlDocument::parse(text).map_err(|_| NOT_KDL.to_string())?;
        let found = doc.nodes_mut().iter_mut().find(|n| {
            n.name().value() == kind.node()
                && n.entries().first().and_then(|e| e.value().as_string()) == Some(name)
        });
        let Some(node) = found else {
            let mut out = text.trim_end().to_string();
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&new_block(kind, name, edit));
            return Ok(out);
        };
        let changed = changed(text, &new_block(kind, name, edit), Format::Kdl, kind, name);
        if changed.is_empty() {
            return Ok(text.to_string());
        }
        let wanted = |path: &[&str]| changed.contains(&path);
        let indent = indentation(node);
        if node.children().is_none() {
            // `container "x"` without a block: give it one.
            let mut block = parse_node(&format!("{} {} {{\n}}", kind.node(), quoted(name)))?;
            *node.children_mut() = block.children_mut().take();
            if let Some(f) = node.format_mut() {
                f.before_children = " ".into();
            }
        }
        let children = node.ensure_children();
        let inner = child_indent(children, &indent);
        let singles = match edit {
            Edit::Network(n) => network_children(n),
            Edit::Container(c) => container_children(c),
        };
        for (child, want) in singles {
            if wanted(&[child]) {
                set_child(children, child, &want, &inner)?;
            }
        }
        if let Edit::Container(c) = edit {
            for (list, lines) in [("forward", forwards(c)), ("bind", binds(c))] {
                if wanted(&[list]) {
                    set_list(children, list, &lines, &inner)?;
                }
            }
            if wanted(&["ssh", "authorized-key"]) {
                set_ssh_keys(children, &keys(c), &inner)?;
            }
        }
        Ok(doc.to_string())
    }

    fn set_ssh_keys(
        children: &mut KdlDocument,
        keys: &[String],
        indent: &str,
    ) -> Result<(), String> {
        let at = children
            .nodes()
            .iter()
            .position(|n| n.name().value() == "ssh");
        match at {
            Some(i) => {
                let ssh = &mut children.nodes_mut()[i];
                let inner = child_indent(ssh.ensure_children(), indent);
                set_list(ssh.ensure_children(), "authorized-key", keys, &inner)?;
                let empty = ssh.children().is_none_or(|c| c.nodes().is_empty());
                if empty && keys.is_empty() {
                    remove_at(children, i);
                }
            }
            None if !keys.is_empty() => {
                let mut block = "ssh {\n".to_string();
                for k in keys {
                    block.push_str(&format!("{indent}    authorized-key {k}\n"));
                }
                block.push_str(&format!("{indent}}}"));
                let node = fresh(&block, indent)?;
                children.nodes_mut().push(node);
            }
            None => {}
        }
        Ok(())
    }
}

mod toml_edit_form {
    use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, value};

    use super::*;

    /// Sets `key` to `new`, keeping the comment and spacing around the
    /// old value (a same-line comment lives in its decor), and the form
    /// the old value was written in: a sub-table (`[container.web.ssh]`)
    /// stays one, an array of tables (`[[container.web.forward]]`) too.
    fn set(table: &mut Table, key: &str, new: Option<toml_edit::Value>) {
        let Some(mut new) = new else {
            table.remove(key);
            return;
        };
        let item = match (table.get(key), new) {
            (Some(Item::Table(_)), toml_edit::Value::InlineTable(t)) => Item::Table(t.into_table()),
            (Some(Item::ArrayOfTables(_)), toml_edit::Value::Array(a))
                if a.iter().all(|v| v.is_inline_table()) =>
            {
                let mut tables = ArrayOfTables::new();
                for v in a {
                    if let toml_edit::Value::InlineTable(t) = v {
                        tables.push(t.into_table());
                    }
                }
                Item::ArrayOfTables(tables)
            }
            (old, other) => {
                new = other;
                if let Some(old) = old.and_then(Item::as_value) {
                    *new.decor_mut() = old.decor().clone();
                }
                Item::Value(new)
            }
        };
        table.insert(key, item);
    }

    fn string(s: &str) -> Option<toml_edit::Value> {
        nonempty(s).map(toml_edit::Value::from)
    }

    fn subnet(address: &str, nat: bool) -> Option<toml_edit::Value> {
        let address = nonempty(address)?;
        if !nat {
            return Some(address.into());
        }
        let mut t = InlineTable::new();
        t.insert("address", address.into());
        t.insert("nat", true.into());
        Some(toml_edit::Value::InlineTable(t))
    }

    fn flag(on: bool) -> Option<toml_edit::Value> {
        on.then(|| true.into())
    }

    fn inline_tables(tables: Vec<InlineTable>) -> Option<toml_edit::Value> {
        let array: Array = tables
            .into_iter()
            .map(toml_edit::Value::InlineTable)
            .collect();
        (!array.is_empty()).then_some(toml_edit::Value::Array(array))
    }

    /// Each key the form sets, with its value (`None`: not set).
    fn values(edit: &Edit) -> Vec<(&'static str, Option<toml_edit::Value>)> {
        match edit {
            Edit::Network(n) => vec![
                ("bridge", string(&n.bridge)),
                ("ipv4", subnet(&n.ipv4, n.ipv4_nat)),
                ("ipv6", subnet(&n.ipv6, n.ipv6_nat)),
            ],
            Edit::Container(c) => {
                let network = nonempty(&c.network).map(|net| {
                    let (v4, v6) = (nonempty(&c.ipv4), nonempty(&c.ipv6));
                    if v4.is_none() && v6.is_none() {
                        return net.into();
                    }
                    let mut t = InlineTable::new();
                    t.insert("name", net.into());
                    for (k, v) in [("ipv4", v4), ("ipv6", v6)] {
                        if let Some(v) = v {
                            t.insert(k, v.into());
                        }
                    }
                    toml_edit::Value::InlineTable(t)
                });
                let forwards = c
                    .forwards
                    .iter()
                    .map(|f| {
                        let mut t = InlineTable::new();
                        t.insert("protocol", f.protocol.trim().into());
                        t.insert("host", i64::from(f.host).into());
                        t.insert("container", i64::from(f.container).into());
                        if !f.loopback {
                            t.insert("loopback", false.into());
                        }
                        t
                    })
                    .collect();
                let binds = c
                    .binds
                    .iter()
                    .filter_map(|b| {
                        let mut t = InlineTable::new();
                        t.insert("source", nonempty(&b.source)?.into());
                        if let Some(target) = nonempty(&b.target) {
                            t.insert("target", target.into());
                        }
                        if b.read_only {
                            t.insert("read-only", true.into());
                        }
                        if b.idmap {
                            t.insert("idmap", true.into());
                        }
                        Some(t)
                    })
                    .collect();
                let mut limits = InlineTable::new();
                if let Some(memory) = nonempty(&c.memory) {
                    limits.insert("memory", memory.into());
                }
                match cpus(&c.cpus) {
                    Some(Cpus::Integer(i)) => limits.insert("cpus", i.into()),
                    Some(Cpus::Float(f)) => limits.insert("cpus", f.into()),
                    Some(Cpus::Text(t)) => limits.insert("cpus", t.into()),
                    None => None,
                };
                let mut environment = InlineTable::new();
                for e in &c.environment {
                    if let Some(name) = nonempty(&e.name) {
                        environment.insert(name, e.value.as_str().into());
                    }
                }
                let table =
                    |t: InlineTable| (!t.is_empty()).then_some(toml_edit::Value::InlineTable(t));
                vec![
                    ("from", string(&c.template)),
                    ("image", string(&c.image)),
                    ("network", network),
                    ("forward", inline_tables(forwards)),
                    ("bind", inline_tables(binds)),
                    ("limits", table(limits)),
                    ("environment", table(environment)),
                    ("docker", flag(c.docker)),
                    ("nested", flag(c.nested)),
                    ("autostart", (!c.autostart).then(|| false.into())),
                    ("root", string(&c.root)),
                ]
            }
        }
    }

    /// The form's values, alone in a host file of their own.
    fn fresh(kind: Kind, name: &str, edit: &Edit) -> String {
        let mut doc = DocumentMut::new();
        let mut table = Table::new();
        for (key, value) in values(edit) {
            set(&mut table, key, value);
        }
        if let Edit::Container(c) = edit {
            set_keys(&mut table, &c.authorized_keys);
        }
        let mut collection = Table::new();
        collection.set_implicit(true);
        collection.insert(name, Item::Table(table));
        doc.insert(kind.node(), Item::Table(collection));
        doc.to_string()
    }

    pub fn apply(text: &str, edit: &Edit) -> Result<String, String> {
        let mut doc: DocumentMut = text.parse().map_err(|_| {
            "the host file is not valid TOML; fix its syntax (see the diagnostics) before using the forms"
                .to_string()
        })?;
        let (kind, name) = match edit {
            Edit::Network(n) => (Kind::Network, n.name.trim()),
            Edit::Container(c) => (Kind::Container, c.name.trim()),
        };
        let changed = changed(text, &fresh(kind, name, edit), Format::Toml, kind, name);
        let exists = parsed(text, Format::Toml, kind, name).is_some();
        if exists && changed.is_empty() {
            return Ok(text.to_string());
        }
        let wanted = |path: &[&str]| !exists || changed.contains(&path);
        let collection = doc
            .entry(kind.node())
            .or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            })
            .as_table_mut()
            .ok_or_else(|| format!("`{}` is not a table in the host file", kind.node()))?;
        let item = collection
            .entry(name)
            .or_insert_with(|| Item::Table(Table::new()));
        if let Some(inline) = item.as_inline_table() {
            // `lan = { … }` inside `[network]`: edit it as a table.
            *item = Item::Table(inline.clone().into_table());
        }
        let table = item
            .as_table_mut()
            .ok_or_else(|| format!("`{}.{name}` is not a table in the host file", kind.node()))?;
        for (key, value) in values(edit) {
            if !wanted(&[key]) {
                continue;
            }
            if kind == Kind::Container && key == "network" {
                set_first_network(table, value);
            } else {
                set(table, key, value);
            }
        }
        if let Edit::Container(c) = edit
            && wanted(&["ssh", "authorized-key"])
        {
            set_keys(table, &c.authorized_keys);
        }
        Ok(doc.to_string())
    }

    /// A container's first network, the only one the form shows: in an
    /// array (`network = ["lan", { name = "back", interface = "eth1" }]`
    /// or `[[container.gw.network]]`) only the first entry changes, and
    /// the others stay as they are written, comments and all. A cleared
    /// form removes only the first entry.
    fn set_first_network(table: &mut Table, new: Option<toml_edit::Value>) {
        match table.get_mut("network") {
            Some(Item::Value(toml_edit::Value::Array(array))) if !array.is_empty() => {
                match new {
                    // `replace` keeps the comment and spacing around it.
                    Some(new) => {
                        array.replace(0, new);
                    }
                    None => {
                        let decor = array.get(0).map(|v| v.decor().clone());
                        array.remove(0);
                        // The new first entry starts where the old one did.
                        if let (Some(decor), Some(first)) = (decor, array.get_mut(0)) {
                            *first.decor_mut() = decor;
                        }
                    }
                }
            }
            Some(Item::ArrayOfTables(tables)) if !tables.is_empty() => match new {
                Some(new) => {
                    let part = |key: &str| match &new {
                        toml_edit::Value::InlineTable(t) => t.get(key).cloned(),
                        name if key == "name" => Some(name.clone()),
                        _ => None,
                    };
                    if let Some(first) = tables.get_mut(0) {
                        for key in ["name", "ipv4", "ipv6"] {
                            set(first, key, part(key));
                        }
                    }
                }
                None => {
                    tables.remove(0);
                }
            },
            _ => set(table, "network", new),
        }
    }

    /// `ssh.authorized-key`, in whichever form `ssh` is written; other
    /// keys of `ssh` (the user) stay.
    fn set_keys(table: &mut Table, keys: &[String]) {
        let keys: Array = keys.iter().filter_map(|k| nonempty(k)).collect();
        let wanted = (!keys.is_empty()).then_some(toml_edit::Value::Array(keys));
        match table.get_mut("ssh") {
            Some(Item::Table(ssh)) => {
                set(ssh, "authorized-key", wanted);
                if ssh.is_empty() {
                    table.remove("ssh");
                }
            }
            Some(Item::Value(toml_edit::Value::InlineTable(ssh))) => {
                match wanted {
                    Some(v) => {
                        ssh.insert("authorized-key", v);
                    }
                    None => {
                        ssh.remove("authorized-key");
                    }
                }
                if ssh.is_empty() {
                    table.remove("ssh");
                }
            }
            _ => {
                let mut ssh = InlineTable::new();
                if let Some(v) = wanted {
                    ssh.insert("authorized-key", v);
                    table.insert("ssh", value(ssh));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KDL: &str = r#"// the lab host
host "lab1" {
    uplink "eth0"                         // NAT leaves through this link
}

network "lan" {
    bridge "br-lan"
    ipv4 "10.42.0.1/24" {                 // the bridge's address
        nat                               // masquerade
    }
}

container "web" {
    from "base"                           // shared settings
    network "lan" ipv4="10.42.0.10"       // fixed address
    forward "tcp" host=8080 container=80
    docker
}
"#;

    fn container(name: &str) -> ContainerForm {
        ContainerForm {
            name: name.into(),
            image: "debian-bookworm".into(),
            network: "lan".into(),
            forwards: vec![ForwardForm {
                protocol: "tcp".into(),
                host: 2222,
                container: 22,
                loopback: true,
            }],
            authorized_keys: vec!["ssh-ed25519 AAAA me@laptop".into()],
            nested: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_new_kdl_container_is_appended_and_the_rest_is_untouched() {
        let out = apply(
            KDL,
            Format::Kdl,
            &Edit::Container(Box::new(container("db"))),
        )
        .unwrap();
        assert!(out.starts_with(KDL.trim_end()), "{out}");
        assert_eq!(
            &out[KDL.trim_end().len()..],
            "\n\ncontainer \"db\" {\n    image \"debian-bookworm\"\n    network \"lan\"\n    nested\n    \
             forward \"tcp\" host=2222 container=22\n    ssh {\n        authorized-key \"ssh-ed25519 AAAA me@laptop\"\n    }\n}\n"
        );
    }

    #[test]
    fn editing_a_kdl_container_keeps_its_comments_and_order() {
        let mut form = container("web");
        form.template = "base".into();
        form.image = String::new();
        form.ipv4 = "10.42.0.11".into();
        form.nested = false;
        form.docker = true;
        let out = apply(KDL, Format::Kdl, &Edit::Container(Box::new(form))).unwrap();
        let expected = KDL.replace(
            "network \"lan\" ipv4=\"10.42.0.10\"       // fixed address\n    forward \"tcp\" host=8080 container=80\n",
            "network \"lan\" ipv4=\"10.42.0.11\"       // fixed address\n    forward \"tcp\" host=2222 container=22\n",
        ).replace(
            "    docker\n}",
            "    docker\n    ssh {\n        authorized-key \"ssh-ed25519 AAAA me@laptop\"\n    }\n}",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn editing_a_kdl_network_changes_only_its_values() {
        let mut form = NetworkForm {
            name: "lan".into(),
            bridge: "br-lan2".into(),
            ipv4: "10.42.0.1/24".into(),
            ipv4_nat: true,
            ipv6: "fd42:42::1/64".into(),
            ipv6_nat: true,
        };
        let out = apply(KDL, Format::Kdl, &Edit::Network(form.clone())).unwrap();
        let expected = KDL.replace("bridge \"br-lan\"", "bridge \"br-lan2\"").replace(
            "        nat                               // masquerade\n    }\n",
            "        nat                               // masquerade\n    }\n    ipv6 \"fd42:42::1/64\" { nat; }\n",
        );
        assert_eq!(out, expected);
        // Turning NAT off removes the block, and the comments inside it.
        form.ipv4_nat = false;
        let out = apply(KDL, Format::Kdl, &Edit::Network(form)).unwrap();
        let expected = expected.replace(
            "    ipv4 \"10.42.0.1/24\" {                 // the bridge's address\n        nat                               // masquerade\n    }\n",
            "    ipv4 \"10.42.0.1/24\"\n",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn every_root_kind_the_vocabulary_allows_round_trips_through_the_form() {
        for kind in crate::model::RootMode::ALL {
            let word = kind.as_str();
            for (text, format) in [(KDL, Format::Kdl), (TOML, Format::Toml)] {
                let mut form: ContainerForm = serde_json::from_value(
                    read(text, format, Kind::Container, "web").unwrap()["form"].clone(),
                )
                .unwrap();
                assert_eq!(form.root, "", "not written: the default");
                form.root = word.to_string();
                let out = apply(text, format, &Edit::Container(Box::new(form.clone()))).unwrap();
                // Written, and read back as that kind.
                let read_back: ContainerForm = serde_json::from_value(
                    read(&out, format, Kind::Container, "web").unwrap()["form"].clone(),
                )
                .unwrap();
                assert_eq!(read_back.root, word, "{out}");
                assert_eq!(crate::model::RootMode::parse(&read_back.root), Ok(kind));
                // Only the root line is new; cleared, it is gone again.
                form.root = String::new();
                assert_eq!(
                    apply(&out, format, &Edit::Container(Box::new(form))).unwrap(),
                    text,
                    "{word} {format:?}"
                );
            }
        }
    }

    #[test]
    fn reading_a_kdl_container_gives_the_form_values() {
        let v = read(KDL, Format::Kdl, Kind::Container, "web").unwrap();
        assert_eq!(v["names"], json!(["web"]));
        let form: ContainerForm = serde_json::from_value(v["form"].clone()).unwrap();
        assert_eq!(form.template, "base");
        assert_eq!(form.ipv4, "10.42.0.10");
        assert_eq!(
            form.forwards,
            vec![ForwardForm {
                protocol: "tcp".into(),
                host: 8080,
                container: 80,
                loopback: true,
            }]
        );
        assert!(form.docker && !form.nested);
        let v = read(KDL, Format::Kdl, Kind::Network, "nope").unwrap();
        assert_eq!(v["form"], Value::Null);
        assert_eq!(v["names"], json!(["lan"]));
    }

    const TOML: &str = r#"# the lab host
[host]
name = "lab1"
uplink = "eth0"                       # NAT leaves through this link

[network.lan]
bridge = "br-lan"                     # the bridge
ipv4 = { address = "10.42.0.1/24", nat = true }   # masquerade

[container.web]
from = "base"
network = { name = "lan", ipv4 = "10.42.0.10" }    # fixed address
docker = true                         # Docker inside
"#;

    #[test]
    fn toml_edits_keep_comments() {
        let form = NetworkForm {
            name: "lan".into(),
            bridge: "br-lan2".into(),
            ipv4: "10.42.0.1/24".into(),
            ipv4_nat: true,
            ..Default::default()
        };
        let out = apply(TOML, Format::Toml, &Edit::Network(form)).unwrap();
        assert_eq!(
            out,
            TOML.replace(
                "bridge = \"br-lan\"                     # the bridge",
                "bridge = \"br-lan2\"                     # the bridge"
            )
        );
        let mut web = container("web");
        web.template = "base".into();
        web.image = String::new();
        web.ipv4 = "10.42.0.10".into();
        web.docker = true;
        web.nested = false;
        let out = apply(TOML, Format::Toml, &Edit::Container(Box::new(web))).unwrap();
        assert!(out.starts_with("# the lab host\n[host]\n"), "{out}");
        assert!(
            out.contains("network = { name = \"lan\", ipv4 = \"10.42.0.10\" }    # fixed address"),
            "{out}"
        );
        assert!(
            out.contains("docker = true                         # Docker inside"),
            "{out}"
        );
        assert!(
            out.contains("forward = [{ protocol = \"tcp\", host = 2222, container = 22 }]"),
            "{out}"
        );
        assert!(
            out.contains("ssh = { authorized-key = [\"ssh-ed25519 AAAA me@laptop\"] }"),
            "{out}"
        );
        let out = apply(
            TOML,
            Format::Toml,
            &Edit::Container(Box::new(container("db"))),
        )
        .unwrap();
        assert!(out.starts_with(TOML), "{out}");
        assert!(out.contains("[container.db]\n"), "{out}");
    }

    #[test]
    fn a_forward_kept_off_loopback_stays_off_through_the_form() {
        for (text, format, written) in [
            (
                KDL,
                Format::Kdl,
                "forward \"tcp\" host=2222 container=22 loopback=#false",
            ),
            (
                TOML,
                Format::Toml,
                "forward = [{ protocol = \"tcp\", host = 2222, container = 22, loopback = false }]",
            ),
        ] {
            let mut form = container("web");
            form.forwards[0].loopback = false;
            let out = apply(text, format, &Edit::Container(Box::new(form))).unwrap();
            assert!(out.contains(written), "{out}");
            let read = read(&out, format, Kind::Container, "web").unwrap();
            assert_eq!(read["form"]["forwards"][0]["loopback"], false, "{out}");
        }
    }

    const MULTI_KDL: &str = r#"network "front" {
    bridge "br-front"
    ipv4 "10.50.0.1/24"
}

network "back" {
    bridge "br-back"
    ipv4 "10.60.0.1/24"
}

network "mgmt" {
    bridge "br-mgmt"
    ipv4 "10.70.0.1/24"
}

container "gw" {
    image "bookworm"
    network "front" ipv4="10.50.0.20"     // the default route
    limits memory="512M"
    network "back"  interface="eth1"  ipv4="10.60.0.20"   // the service side
    // management, last
    network "mgmt" ipv4="10.70.0.20" interface="mgmt0"
}
"#;

    const MULTI_TOML: &str = r#"[network.front]
bridge = "br-front"
ipv4 = "10.50.0.1/24"

[network.back]
bridge = "br-back"
ipv4 = "10.60.0.1/24"

[network.mgmt]
bridge = "br-mgmt"
ipv4 = "10.70.0.1/24"

[container.gw]
image = "bookworm"
network = [
    { name = "front", ipv4 = "10.50.0.20" },   # the default route
    { name = "back", interface = "eth1", ipv4 = "10.60.0.20" },  # the service side
    # management, last
    {ipv4="10.70.0.20",name="mgmt",interface="mgmt0"},
]
limits = { memory = "512M" }
"#;

    /// The same container with its networks as an array of tables.
    const MULTI_TOML_TABLES: &str = r#"[network.front]
bridge = "br-front"
ipv4 = "10.50.0.1/24"

[network.back]
bridge = "br-back"
ipv4 = "10.60.0.1/24"

[container.gw]
image = "bookworm"
limits = { memory = "512M" }

[[container.gw.network]]
name = "front"          # the default route
ipv4 = "10.50.0.20"

[[container.gw.network]]
name = "back"
interface = "eth1"      # the service side
ipv4 = "10.60.0.20"
"#;

    /// The form of `gw` as read from `text`.
    fn gw(text: &str, format: Format) -> ContainerForm {
        let v = read(text, format, Kind::Container, "gw").unwrap();
        serde_json::from_value(v["form"].clone()).unwrap()
    }

    /// The networks of `gw` as ctm reads them: name, interface, addresses.
    fn gw_networks(text: &str, format: Format) -> Vec<String> {
        let gw = parsed(text, format, Kind::Container, "gw").unwrap();
        gw.children_named("network").map(canonical).collect()
    }

    #[test]
    fn a_form_edit_keeps_every_network_after_the_first_byte_for_byte() {
        for (text, format, memory) in [
            (MULTI_KDL, Format::Kdl, ("memory=\"512M\"", "memory=\"1G\"")),
            (
                MULTI_TOML,
                Format::Toml,
                ("memory = \"512M\"", "memory = \"1G\""),
            ),
            (
                MULTI_TOML_TABLES,
                Format::Toml,
                ("memory = \"512M\"", "memory = \"1G\""),
            ),
        ] {
            let mut form = gw(text, format);
            // The form shows the first network.
            assert_eq!(
                (form.network.as_str(), form.ipv4.as_str()),
                ("front", "10.50.0.20"),
                "{text}"
            );
            assert_eq!(form.memory, "512M");
            form.memory = "1G".into();
            let out = apply(text, format, &Edit::Container(Box::new(form))).unwrap();
            // Nothing but the memory changed, to the byte.
            assert_eq!(out, text.replace(memory.0, memory.1), "{format:?}");
            assert_eq!(gw_networks(&out, format), gw_networks(text, format));
            // Saving the form as read changes nothing at all.
            let form = gw(&out, format);
            assert_eq!(
                apply(&out, format, &Edit::Container(Box::new(form))).unwrap(),
                out
            );
        }
    }

    #[test]
    fn changing_the_first_network_in_the_form_leaves_the_others_as_written() {
        for (text, format, first) in [
            (
                MULTI_KDL,
                Format::Kdl,
                (
                    "network \"front\" ipv4=\"10.50.0.20\"",
                    "network \"front\" ipv4=\"10.50.0.21\"",
                ),
            ),
            (
                MULTI_TOML,
                Format::Toml,
                (
                    "{ name = \"front\", ipv4 = \"10.50.0.20\" }",
                    "{ name = \"front\", ipv4 = \"10.50.0.21\" }",
                ),
            ),
            (
                MULTI_TOML_TABLES,
                Format::Toml,
                ("ipv4 = \"10.50.0.20\"", "ipv4 = \"10.50.0.21\""),
            ),
        ] {
            let mut form = gw(text, format);
            form.ipv4 = "10.50.0.21".into();
            let out = apply(text, format, &Edit::Container(Box::new(form))).unwrap();
            assert_eq!(out, text.replace(first.0, first.1), "{format:?}\n{out}");
            let (old, new) = (gw_networks(text, format), gw_networks(&out, format));
            assert_eq!(new.len(), old.len(), "{out}");
            assert_eq!(new[1..], old[1..], "{out}");
        }
    }

    #[test]
    fn clearing_the_network_in_the_form_removes_only_the_first() {
        for (text, format) in [
            (MULTI_KDL, Format::Kdl),
            (MULTI_TOML, Format::Toml),
            (MULTI_TOML_TABLES, Format::Toml),
        ] {
            let mut form = gw(text, format);
            form.network = String::new();
            form.ipv4 = String::new();
            let out = apply(text, format, &Edit::Container(Box::new(form))).unwrap();
            let (old, new) = (gw_networks(text, format), gw_networks(&out, format));
            assert_eq!(new, old[1..], "{format:?}\n{out}");
        }
    }

    #[test]
    fn broken_text_is_refused_not_mangled() {
        let err = apply(
            "network \"lan\" {",
            Format::Kdl,
            &Edit::Network(NetworkForm {
                name: "lan".into(),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert!(err.contains("not valid KDL"), "{err}");
    }
}
