//! `ctm serve FILE`: its arguments. The command line does not run the web
//! editor itself: it hands the request to `main`, which starts the web
//! face (`web::serve`), so that neither face uses the other.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The host file to edit (`.kdl`, or `.toml` for the TOML form).
    pub file: PathBuf,
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
