//! Running the web editor for one host file (`ctm serve`, docs/web.md):
//! the socket, the async runtime, and a clean shutdown.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use miette::{IntoDiagnostic as _, WrapErr as _, miette};

use crate::engine::{Event, Target};
use crate::web::{self, AppState, Config};

/// What `ctm serve` was asked to serve, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The host file to edit; `None`: the fleet page only.
    pub file: Option<PathBuf>,
    /// The fleet whose page is served, if any.
    pub fleet: Option<PathBuf>,
    /// `-F FILE` for the fleet page's ssh calls.
    pub ssh_config: Option<PathBuf>,
    /// The root it manages.
    pub root: PathBuf,
    /// HOST:PORT, or the path of a unix socket.
    pub listen: String,
    /// Apply to `/` even when the running system cannot be driven.
    pub files_only: bool,
}

fn say(event: Event) {
    let _ = writeln!(std::io::stderr(), "{event}");
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// The socket systemd passed (LISTEN_FDS), else the one `--listen` names.
async fn listener(listen: &str) -> miette::Result<(Listener, String)> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        if let Ok(Some(l)) = fds.take_tcp_listener(0) {
            l.set_nonblocking(true).into_diagnostic()?;
            let l = tokio::net::TcpListener::from_std(l).into_diagnostic()?;
            let url = format!("http://{}/", l.local_addr().into_diagnostic()?);
            return Ok((Listener::Tcp(l), url));
        }
        let l = fds
            .take_unix_listener(0)
            .into_diagnostic()
            .wrap_err("the socket systemd passed is neither TCP nor a unix socket")?
            .ok_or_else(|| miette!("systemd passed no usable socket"))?;
        l.set_nonblocking(true).into_diagnostic()?;
        let l = tokio::net::UnixListener::from_std(l).into_diagnostic()?;
        return Ok((Listener::Unix(l), "the unix socket from systemd".into()));
    }
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot listen on {addr}"))?;
        let url = format!("http://{}/", l.local_addr().into_diagnostic()?);
        return Ok((Listener::Tcp(l), url));
    }
    if !listen.contains('/') {
        return Err(miette!(
            help =
                "give HOST:PORT (127.0.0.1:7780, [::1]:7780) or a socket path (/run/ctm/web.sock)",
            "--listen {listen:?} is neither an address nor a path"
        ));
    }
    let path = PathBuf::from(listen);
    // A socket file left by an earlier server that nobody answers on.
    if std::os::unix::net::UnixStream::connect(&path).is_err() && path.exists() {
        std::fs::remove_file(&path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let l = tokio::net::UnixListener::bind(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot listen on {}", path.display()))?;
    // Only the owner (root) may connect, as to the token file.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot set the mode of {}", path.display()))?;
    Ok((Listener::Unix(l), format!("unix:{}", path.display())))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers, the default action still stops us.
        _ => std::future::pending().await,
    }
}

pub fn run(args: &Options) -> miette::Result<ExitCode> {
    if let Some(why) = web::assets::unavailable() {
        return Err(miette!("{why}"));
    }
    let existing = |path: &PathBuf, what: &str| -> miette::Result<PathBuf> {
        let absolute = std::path::absolute(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot resolve {}", path.display()))?;
        if !absolute.is_file() {
            return Err(miette!("{what} {} does not exist", absolute.display()));
        }
        Ok(absolute)
    };
    let file = args
        .file
        .as_ref()
        .map(|f| existing(f, "host file"))
        .transpose()?;
    let fleet = args
        .fleet
        .as_ref()
        .map(|f| existing(f, "fleet file"))
        .transpose()?;
    if file.is_some() {
        // Like every command: finish whatever an interrupted ctm left first.
        crate::engine::generations::recover(&Target::new(&args.root), &mut say)?;
    }
    let config = Config {
        allow_files_only: args.files_only,
        fleet: fleet.clone().map(|file| web::fleet::FleetConfig {
            file,
            connect: crate::backend::ssh::OpenSsh::connect_with(args.ssh_config.clone()),
        }),
        ..Config::new(file.clone(), args.root.clone())
    };
    if let Some(reason) = &config.files_only_reason {
        let _ = writeln!(
            std::io::stderr(),
            "{}",
            format_args!(
                "ctm serve: managing the files under / only: {reason}; {}",
                if args.files_only {
                    "applies write the files and start nothing (--files-only)"
                } else {
                    "applies are refused (start with --files-only to allow them)"
                }
            )
        );
    }
    let (state, fresh) = AppState::new(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()
        .wrap_err("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (listener, url) = listener(&args.listen).await?;
        let mut out = std::io::stdout().lock();
        let serving = match (&file, &fleet) {
            (Some(file), Some(fleet)) => format!(
                "{} on root {}, and the fleet {}",
                file.display(),
                args.root.display(),
                fleet.display()
            ),
            (Some(file), None) => format!("{} on root {}", file.display(), args.root.display()),
            (None, fleet) => format!(
                "the fleet {}",
                fleet
                    .as_ref()
                    .map_or(String::new(), |f| f.display().to_string())
            ),
        };
        let _ = writeln!(out, "ctm serve: {serving}, listening on {url}");
        if let Some(token) = fresh.login {
            let _ = writeln!(
                out,
                "ctm serve: made a login token and saved it in {} (mode 0600). \
                 It is shown this once:\n\n    {token}\n\nOpen {url}login and paste it.",
                state.auth.token_path.display()
            );
        }
        if let Some(token) = fresh.metrics {
            let _ = writeln!(
                out,
                "ctm serve: made a metrics token, which reads {url}metrics and nothing else, \
                 and saved it in {} (mode 0600). It is shown this once:\n\n    {token}\n",
                state.auth.metrics_path.display()
            );
        }
        let _ = out.flush();
        drop(out);
        let app = web::router(state.clone());
        let served = async {
            match listener {
                Listener::Tcp(l) => axum::serve(l, app).await,
                Listener::Unix(l) => axum::serve(l, app).await,
            }
        };
        tokio::select! {
            result = served => result.into_diagnostic().wrap_err("the server failed")?,
            () = shutdown_signal() => {}
        }
        // An apply in the middle of its switch finishes before we exit.
        state.jobs.idle().await;
        Ok::<_, miette::Report>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
