//! Links between containers: a veth pair with one end in each.
//!
//! systemd has no setting for it. nspawn's `VirtualEthernetExtra=` pairs a
//! container with the host, not with another container; `Interface=`
//! moves a host link into a container, but a veth pair is deleted with
//! the first network namespace it is in, so once either container stops
//! the other cannot start again (its `Interface=` names a link that is
//! gone). So each link is a oneshot unit that makes the pair between the
//! two running containers' namespaces (`templates/ctm-link`): both
//! containers' units want it, it starts after both, stops (and removes
//! the pair) with either, and the next start of either makes it again.
//! Inside each container, its networkd configures its end from a file ctm
//! binds in, as it does `host0`'s.

use super::ini::{Ini, escape_controls};
use super::{Artifacts, Owner};
use crate::layout::{self, LINK_SCRIPT, UNIT_DIR};
use crate::model::{Host, Link};

const SCRIPT: &str = include_str!("../../templates/ctm-link");

pub fn links(host: &Host, header: &[String], out: &mut Artifacts) {
    if host.links.iter().all(|l| host.link_down(l)) {
        return;
    }
    let mut script = String::from("#!/bin/sh\n");
    for line in header {
        script.push_str(&format!("# {}\n", escape_controls(line)));
    }
    script.push_str(SCRIPT);
    out.file(LINK_SCRIPT.into(), Owner::Host, script);
    for link in host.links.iter().filter(|l| !host.link_down(l)) {
        unit(link, header, out);
    }
}

fn unit(link: &Link, header: &[String], out: &mut Artifacts) {
    let [a, b] = &link.ends;
    let name = layout::link_unit(a.container.as_str(), a.interface.as_str());
    let units = format!(
        "{} {}",
        layout::unit(a.container.as_str()),
        layout::unit(b.container.as_str())
    );
    let args = format!(
        "{} {} {} {}",
        a.container, a.interface, b.container, b.interface
    );
    let mut ini = Ini::new(header);
    ini.section("Unit")
        .set(
            "Description",
            format!(
                "ctm: link from {} ({}) to {} ({})",
                a.container, a.interface, b.container, b.interface
            ),
        )
        // Made only between running containers, never starting one; gone
        // with either, made again when it starts (both want this unit).
        .set("Requisite", &units)
        .set("After", &units)
        .set("PartOf", &units);
    ini.section("Service")
        .set("Type", "oneshot")
        .set("RemainAfterExit", "yes")
        .set("ExecStart", format!("/bin/sh /{LINK_SCRIPT} up {args}"))
        .set("ExecStop", format!("/bin/sh /{LINK_SCRIPT} down {args}"));
    // The unit belongs to its first end; a change to it restarts that
    // container, and the restart makes the pair again.
    out.file(
        format!("{UNIT_DIR}/{name}"),
        Owner::Container(a.container.clone()),
        ini.render(),
    );
    for end in [a, b] {
        out.symlink(
            layout::unit_wants(end.container.as_str(), &name),
            Owner::Container(end.container.clone()),
            &format!("/{UNIT_DIR}/{name}"),
        );
    }
}
