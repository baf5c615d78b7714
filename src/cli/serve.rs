//! `ctm serve FILE`: its arguments. The command line does not run the web
//! editor itself: it hands the request to `main`, which starts the web
//! face (`web::serve`), so that neither face uses the other.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The host file to edit (`.kdl`, or `.toml` for the TOML form);
    /// without one, only the fleet page of --fleet is served.
    #[arg(required_unless_present = "fleet")]
    pub file: Option<PathBuf>,
    /// A fleet file: add the fleet page, with each host's status and the
    /// fleet plan, reached over SSH (docs/fleet.md).
    #[arg(long, value_name = "FLEET")]
    pub fleet: Option<PathBuf>,
    /// The ssh configuration file for the fleet page's ssh calls (`ssh -F
    /// FILE`).
    #[arg(long, value_name = "FILE", requires = "fleet")]
    pub ssh_config: Option<PathBuf>,
    /// Manage the files under this directory instead of the running system.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Where to listen: HOST:PORT, or the path of a unix socket. Under
    /// systemd socket activation the socket comes from systemd instead.
    #[arg(long, value_name = "ADDR|PATH", default_value = "127.0.0.1:7780")]
    pub listen: String,
    /// On root `/` of a machine whose running system ctm cannot drive (no
    /// systemd as PID 1): allow applies anyway, which write the files
    /// under /etc without starting or reloading anything. Without it the
    /// editor shows why and refuses to apply.
    #[arg(long)]
    pub files_only: bool,
}
