//! Prints a synthetic host file, for benchmarks and memory measurements:
//!
//!     cargo run --release --example gen_host -- 1000 100 50 > /tmp/big.kdl
//!
//! The arguments are the numbers of containers, networks and tunnels
//! (default 1000 100 50); see `ctm::synthetic::host_kdl`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let defaults = [1000, 100, 50];
    if args.len() > defaults.len() {
        eprintln!("usage: gen_host [CONTAINERS [NETWORKS [TUNNELS]]]");
        return ExitCode::FAILURE;
    }
    let mut counts = defaults;
    for (count, arg) in counts.iter_mut().zip(&args) {
        match arg.parse() {
            Ok(n) => *count = n,
            Err(_) => {
                eprintln!("gen_host: `{arg}` is not a count");
                eprintln!("usage: gen_host [CONTAINERS [NETWORKS [TUNNELS]]]");
                return ExitCode::FAILURE;
            }
        }
    }
    let [containers, networks, tunnels] = counts;
    let text = ctm::synthetic::host_kdl(containers, networks, tunnels);
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_host: {e}");
            ExitCode::FAILURE
        }
    }
}
