//! Prints one of the hostile host files of issue 13, for benchmarks and
//! measurements of time and memory:
//!
//!     cargo run --release --example gen_hostile -- repeated-property 100000 > /tmp/h.kdl
//!
//! The kinds are those of `ctm::synthetic::Hostile`: repeated-property,
//! repeated-node, distinct-properties, nested and minimal-containers.

use std::io::Write;
use std::process::ExitCode;

use ctm::synthetic::{Hostile, hostile_kdl};

fn usage() -> ExitCode {
    let kinds: Vec<&str> = Hostile::ALL.iter().map(|(_, name)| *name).collect();
    eprintln!(
        "usage: gen_hostile KIND N, where KIND is one of {}",
        kinds.join(", ")
    );
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, n] = args.as_slice() else {
        return usage();
    };
    let Some((kind, _)) = Hostile::ALL.iter().find(|(_, name)| name == kind) else {
        return usage();
    };
    let Ok(n) = n.parse() else {
        return usage();
    };
    match std::io::stdout()
        .lock()
        .write_all(hostile_kdl(*kind, n).as_bytes())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_hostile: {e}");
            ExitCode::FAILURE
        }
    }
}
