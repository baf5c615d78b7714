//! The HTML pages: a Bootstrap layout and, for each page, the skeleton its
//! script (`web/src/`) fills in from the JSON API, so that what a page
//! shows is exactly what the API answers. maud escapes every value put
//! into the markup; the pages carry no inline script or style.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use super::auth::{CspNonce, Csrf};
use super::{Config, Shared};
use crate::model::Name;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Dashboard,
    Editor,
    Apply,
    Generations,
    Logs,
    Fleet,
}

impl Page {
    const ALL: [Page; 6] = [
        Page::Dashboard,
        Page::Editor,
        Page::Apply,
        Page::Generations,
        Page::Logs,
        Page::Fleet,
    ];

    /// Whether this server serves the page: the host file's pages with a
    /// host file, the fleet's with a fleet.
    fn served(self, config: &Config) -> bool {
        match self {
            Page::Fleet => config.fleet.is_some(),
            _ => config.host_file.is_some(),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Page::Dashboard => "Dashboard",
            Page::Editor => "Editor",
            Page::Apply => "Apply",
            Page::Generations => "Generations",
            Page::Logs => "Logs",
            Page::Fleet => "Fleet",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Page::Dashboard => "/",
            Page::Editor => "/editor",
            Page::Apply => "/apply",
            Page::Generations => "/generations",
            Page::Logs => "/logs",
            Page::Fleet => "/fleet",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Page::Dashboard => "dashboard",
            Page::Editor => "editor",
            Page::Apply => "apply",
            Page::Generations => "generations",
            Page::Logs => "logs",
            Page::Fleet => "fleet",
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · ctm" }
        // No icon: saves the browser a request that would only 404.
        link rel="icon" href="data:,";
        link rel="stylesheet" href="/assets/app.css";
        script src="/assets/app.js" defer {}
    }
}

/// What every page after login carries into its layout.
#[derive(Clone)]
pub struct PageContext {
    csrf: Csrf,
    nonce: CspNonce,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PageContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let ext = &parts.extensions;
        Ok(PageContext {
            csrf: ext.get::<Csrf>().cloned().unwrap_or(Csrf(String::new())),
            nonce: ext
                .get::<CspNonce>()
                .cloned()
                .unwrap_or(CspNonce(String::new())),
        })
    }
}

fn layout(state: &Shared, cx: &PageContext, page: Page, body: Markup) -> Html<String> {
    // What the server serves: the host file on its root, or the fleet.
    let (served, on_root) = match (&state.config.host_file, &state.config.fleet) {
        (Some(file), _) => (file.display().to_string(), true),
        (None, Some(fleet)) => (fleet.file.display().to_string(), false),
        (None, None) => (String::new(), true),
    };
    let root = state.config.root.display().to_string();
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    (head(page.title()))
                    meta name="csrf-token" content=(cx.csrf.0);
                    meta name="csp-nonce" content=(cx.nonce.0);
                }
                body data-page=(page.id()) data-host-file=[state.config.host_file.as_ref().map(|_| "yes")] class="bg-body-tertiary" {
                    nav class="navbar navbar-expand-md bg-dark border-bottom border-body mb-3" data-bs-theme="dark" {
                        div class="container-fluid" {
                            a class="navbar-brand fw-semibold" href="/" { "ctm" }
                            button class="navbar-toggler" type="button" data-bs-toggle="collapse"
                                data-bs-target="#nav" aria-controls="nav" aria-expanded="false"
                                aria-label="Toggle navigation" {
                                span class="navbar-toggler-icon" {}
                            }
                            div class="collapse navbar-collapse" id="nav" {
                                ul class="navbar-nav me-auto" {
                                    @for p in Page::ALL.into_iter().filter(|p| p.served(&state.config)) {
                                        li class="nav-item" {
                                            @if p == page {
                                                a class="nav-link active" aria-current="page" href=(p.href()) { (p.title()) }
                                            } @else {
                                                a class="nav-link" href=(p.href()) { (p.title()) }
                                            }
                                        }
                                    }
                                }
                                @if on_root {
                                    span class="navbar-text small me-3 text-truncate" title=(format!("{served} on root {root}")) {
                                        code class="text-light" { (served) }
                                        " · root " code class="text-light" { (root) }
                                    }
                                } @else {
                                    span class="navbar-text small me-3 text-truncate" title=(format!("the fleet {served}")) {
                                        "fleet " code class="text-light" { (served) }
                                    }
                                }
                                button id="logout" class="btn btn-outline-light btn-sm" type="button" { "Log out" }
                            }
                        }
                    }
                    main class="container-fluid pb-4" {
                        @if let Some(reason) = &state.config.files_only_reason {
                            div class="alert alert-secondary small" id="files-only" role="status" {
                                strong { "Files only: " }
                                "ctm cannot drive the running system here (" (reason) "). "
                                @if state.config.allow_files_only {
                                    "An apply writes the files under / and starts, stops and reloads nothing (the server was started with --files-only)."
                                } @else {
                                    "Apply and rollback are refused, since they would write the real /etc without starting anything; start "
                                    code { "ctm serve --files-only" } " to allow that."
                                }
                            }
                        }
                        // Filled on every page while an apply waits for its
                        // confirmation, with the time left (app.js).
                        div id="confirm-banner" aria-live="polite" {}
                        div id="alerts" {}
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

pub fn login(error: Option<&str>) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head { (head("Log in")) }
                body data-page="login" class="bg-body-tertiary" {
                    main class="container" {
                        div class="row justify-content-center mt-5" {
                            div class="col-12 col-sm-10 col-md-6 col-lg-4" {
                                div class="card shadow-sm" {
                                    div class="card-body p-4" {
                                        h1 class="h4 mb-3" { "ctm" }
                                        p class="text-body-secondary small" {
                                            "Paste the token that " code { "ctm serve" }
                                            " printed when it first started (it is kept in "
                                            code { "var/lib/ctm/web-token" } " under the root)."
                                        }
                                        @if let Some(error) = error {
                                            div class="alert alert-danger py-2" role="alert" { (error) }
                                        }
                                        form method="post" action="/login" {
                                            div class="mb-3" {
                                                label class="form-label" for="token" { "Token" }
                                                input class="form-control font-monospace" type="password" id="token"
                                                    name="token" autocomplete="current-password" required autofocus;
                                            }
                                            button class="btn btn-primary w-100" type="submit" { "Log in" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        .into_string(),
    )
}

fn card(title: &str, id: &str, body: Markup) -> Markup {
    html! {
        div class="card shadow-sm mb-3" {
            div class="card-header fw-semibold" { (title) }
            div class="card-body" id=(id) { (body) }
        }
    }
}

fn loading() -> Markup {
    html! { p class="text-body-secondary mb-0" { "Loading…" } }
}

async fn dashboard(State(state): State<Shared>, cx: PageContext) -> Html<String> {
    let body = html! {
        div class="d-flex flex-wrap align-items-baseline gap-2 mb-3" {
            h1 class="h3 mb-0 me-auto" { "Dashboard" }
            span class="small text-body-secondary" id="refreshed" {}
        }
        div class="row g-3 mb-3" id="summary" {}
        (card("Containers", "containers", loading()))
        div class="row g-3" {
            div class="col-lg-6" { (card("Networks", "networks", loading())) }
            div class="col-lg-6" { (card("Tunnels", "tunnels", loading())) }
        }
    };
    layout(&state, &cx, Page::Dashboard, body)
}

fn text_input(id: &str, label: &str, placeholder: &str, help: Option<&str>) -> Markup {
    html! {
        div class="mb-2" {
            label class="form-label small mb-1" for=(id) { (label) }
            input class="form-control form-control-sm" type="text" id=(id) name=(id) placeholder=(placeholder);
            @if let Some(help) = help { div class="form-text" { (help) } }
        }
    }
}

fn check_input(id: &str, label: &str) -> Markup {
    html! {
        div class="form-check form-check-inline" {
            input class="form-check-input" type="checkbox" id=(id) name=(id);
            label class="form-check-label small" for=(id) { (label) }
        }
    }
}

/// A form of the editor: a list to pick what to edit, the fields, and
/// the button that puts the values into the text.
fn edit_form(kind: &str, fields: Markup) -> Markup {
    html! {
        form id=(format!("{kind}-form")) class="edit-form" novalidate {
            div class="input-group input-group-sm mb-2" {
                select class="form-select" id=(format!("{kind}-pick")) aria-label=(format!("The {kind} to edit")) {}
                button class="btn btn-outline-secondary" type="button" id=(format!("{kind}-load")) { "Load" }
            }
            (fields)
            button class="btn btn-primary btn-sm" type="submit" { "Put into the host file" }
            div class="form-text" { "Changes the text in the editor, keeping comments; save to keep it." }
        }
    }
}

fn network_form() -> Markup {
    edit_form(
        "network",
        html! {
            (text_input("network-name", "Name", "lan", None))
            (text_input("network-bridge", "Bridge", "br-lan", Some("The bridge interface, at most 15 characters.")))
            div class="row g-2" {
                div class="col-sm-6" { (text_input("network-ipv4", "IPv4 address/prefix", "10.42.0.1/24", None)) }
                div class="col-sm-6" { (text_input("network-ipv6", "IPv6 address/prefix", "fd42:42::1/64", None)) }
            }
            div class="mb-2" {
                (check_input("network-nat4", "NAT for IPv4"))
                (check_input("network-nat6", "NAT for IPv6"))
            }
        },
    )
}

fn container_form() -> Markup {
    edit_form(
        "container",
        html! {
            (text_input("container-name", "Name", "web", None))
            div class="row g-2" {
                div class="col-sm-6" { (text_input("container-template", "Template (from)", "base", None)) }
                div class="col-sm-6" { (text_input("container-image", "Image", "debian-bookworm", Some("Leave empty to use the template's."))) }
            }
            div class="row g-2" {
                div class="col-sm-4" { (text_input("container-network", "Network", "lan", None)) }
                div class="col-sm-4" { (text_input("container-ipv4", "IPv4", "auto", None)) }
                div class="col-sm-4" { (text_input("container-ipv6", "IPv6", "auto", None)) }
            }
            div class="mb-2" {
                label class="form-label small mb-1" for="container-forwards" { "Port forwards" }
                textarea class="form-control form-control-sm font-monospace" id="container-forwards" name="container-forwards" rows="2" placeholder="tcp 8080 80" {}
                div class="form-text" { "One a line: protocol, host port, container port." }
            }
            div class="mb-2" {
                label class="form-label small mb-1" for="container-keys" { "SSH authorized keys" }
                textarea class="form-control form-control-sm font-monospace" id="container-keys" name="container-keys" rows="2" placeholder="ssh-ed25519 AAAA… user@laptop" {}
                div class="form-text" { "One key a line." }
            }
            div class="mb-2" {
                (check_input("container-docker", "Docker inside"))
                (check_input("container-nested", "Nested containers"))
            }
        },
    )
}

async fn editor(State(state): State<Shared>, cx: PageContext) -> Html<String> {
    let body = html! {
        div class="row g-3" {
            div class="col-xl-7" {
                div class="card shadow-sm" {
                    div class="card-header d-flex flex-wrap align-items-center gap-2" {
                        span class="fw-semibold me-auto text-truncate" id="file-name" title=(state.config.host_file.as_ref().map_or(String::new(), |f| f.display().to_string())) {
                            (state.config.host_file.as_ref().and_then(|f| f.file_name()).map_or(String::new(), |n| n.to_string_lossy().into_owned()))
                        }
                        span class="badge text-bg-secondary" id="validity" { "checking…" }
                        span class="small text-body-secondary" id="saved-state" {}
                        button class="btn btn-outline-secondary btn-sm" type="button" id="revert" { "Reload from disk" }
                        button class="btn btn-primary btn-sm" type="button" id="save" { "Save" }
                        a class="btn btn-success btn-sm" href="/apply" id="to-apply" { "Apply…" }
                    }
                    div class="card-body p-0" { div id="editor" {} }
                    div class="card-footer" {
                        ul class="list-unstyled mb-0 small" id="diagnostics" {}
                    }
                }
            }
            div class="col-xl-5" {
                div class="card shadow-sm" {
                    div class="card-header" {
                        ul class="nav nav-tabs card-header-tabs" role="tablist" {
                            li class="nav-item" role="presentation" {
                                button class="nav-link active" type="button" data-tab="plan-pane" role="tab" aria-selected="true" { "Plan" }
                            }
                            li class="nav-item" role="presentation" {
                                button class="nav-link" type="button" data-tab="network-pane" role="tab" aria-selected="false" { "Network" }
                            }
                            li class="nav-item" role="presentation" {
                                button class="nav-link" type="button" data-tab="container-pane" role="tab" aria-selected="false" { "Container" }
                            }
                        }
                    }
                    div class="card-body" {
                        div class="tab-pane" id="plan-pane" { div id="plan" { (loading()) } }
                        div class="tab-pane d-none" id="network-pane" { (network_form()) }
                        div class="tab-pane d-none" id="container-pane" { (container_form()) }
                    }
                }
            }
        }
        div class="modal-backdrop-lite d-none" id="conflict" {
            div class="card shadow border-danger" {
                div class="card-header text-bg-danger" { "The host file changed on disk since it was loaded" }
                div class="card-body" {
                    p class="small" { "Someone else saved it. Their change, from the text you loaded to the text on disk now:" }
                    pre class="diff small" id="conflict-diff" {}
                    div class="d-flex gap-2" {
                        button class="btn btn-outline-secondary btn-sm" type="button" id="conflict-keep" { "Keep editing mine" }
                        button class="btn btn-danger btn-sm" type="button" id="conflict-take" { "Load theirs (drops my edits)" }
                    }
                }
            }
        }
    };
    layout(&state, &cx, Page::Editor, body)
}

async fn apply(State(state): State<Shared>, cx: PageContext) -> Html<String> {
    let body = html! {
        h1 class="h3 mb-3" { "Apply the saved host file" }
        div class="row g-3" {
            div class="col-lg-7" { (card("Plan", "plan", loading())) }
            div class="col-lg-5" {
                div class="card shadow-sm mb-3" {
                    div class="card-header fw-semibold" { "Apply" }
                    div class="card-body" {
                        form id="apply-form" {
                            div class="mb-2" {
                                label class="form-label small mb-1" for="confirm-timeout" { "Confirm within (seconds, optional)" }
                                input class="form-control form-control-sm" type="number" min="1" id="confirm-timeout" name="confirm-timeout" placeholder="no confirmation needed";
                                div class="form-text" { "If set, the host returns to the previous generation unless you press Confirm in time." }
                            }
                            div class="form-check mb-3" {
                                input class="form-check-input" type="checkbox" id="git-commit" name="git-commit";
                                label class="form-check-label small" for="git-commit" { "git commit the host file and its lock after a successful apply" }
                            }
                            button class="btn btn-success" type="submit" id="apply-button" disabled
                                data-refused=[state.may_change().err().map(|e| e.body["error"].as_str().unwrap_or_default().to_string())] { "Apply these changes" }
                        }
                    }
                }
                (card("Progress", "progress", html! { p class="text-body-secondary mb-0" { "Nothing running." } }))
            }
        }
    };
    layout(&state, &cx, Page::Apply, body)
}

async fn generations(State(state): State<Shared>, cx: PageContext) -> Html<String> {
    let body = html! {
        h1 class="h3 mb-3" { "Generations" }
        (card("Every generation", "generations", loading()))
        div class="row g-3" {
            div class="col-lg-6" {
                div class="card shadow-sm mb-3" {
                    div class="card-header fw-semibold" { "Compare two" }
                    div class="card-body" {
                        form id="diff-form" class="row g-2 align-items-end mb-2" {
                            div class="col-5" {
                                label class="form-label small mb-1" for="diff-a" { "From" }
                                select class="form-select form-select-sm" id="diff-a" {}
                            }
                            div class="col-5" {
                                label class="form-label small mb-1" for="diff-b" { "To" }
                                select class="form-select form-select-sm" id="diff-b" {}
                            }
                            div class="col-2" { button class="btn btn-outline-primary btn-sm w-100" type="submit" { "Diff" } }
                        }
                        div id="diff" {}
                    }
                }
            }
            div class="col-lg-6" {
                (card("Roll back", "rollback", html! { p class="text-body-secondary mb-0" { "Choose “Roll back…” on a generation to see the plan first." } }))
                (card("Progress", "progress", html! { p class="text-body-secondary mb-0" { "Nothing running." } }))
            }
        }
    };
    layout(&state, &cx, Page::Generations, body)
}

async fn logs_index(State(state): State<Shared>, cx: PageContext) -> Html<String> {
    logs_page(&state, &cx, None)
}

async fn logs_of(
    State(state): State<Shared>,
    cx: PageContext,
    Path(name): Path<String>,
) -> Response {
    match Name::parse(&name) {
        Ok(name) => logs_page(&state, &cx, Some(name.as_str())).into_response(),
        Err(_) => not_found().await.into_response(),
    }
}

fn logs_page(state: &Shared, cx: &PageContext, name: Option<&str>) -> Html<String> {
    let body = html! {
        div class="d-flex flex-wrap align-items-center gap-2 mb-3" {
            h1 class="h3 mb-0 me-auto" { "Logs" @if let Some(name) = name { " of " code { (name) } } }
            select class="form-select form-select-sm w-auto" id="log-container" aria-label="Container" data-selected=[name] {}
            div class="form-check form-switch mb-0" {
                input class="form-check-input" type="checkbox" role="switch" id="follow" checked;
                label class="form-check-label small" for="follow" { "Follow" }
            }
        }
        div class="card shadow-sm" {
            div class="card-body p-0" {
                pre class="journal mb-0" id="journal" {}
            }
        }
    };
    layout(state, cx, Page::Logs, body)
}

async fn not_found() -> impl IntoResponse {
    (
        axum::http::StatusCode::NOT_FOUND,
        Html(
            html! {
                (DOCTYPE)
                html lang="en" {
                    head { (head("Not found")) }
                    body class="bg-body-tertiary" {
                        main class="container py-5" {
                            h1 class="h4" { "Not found" }
                            p { a href="/" { "Back to the start" } }
                        }
                    }
                }
            }
            .into_string(),
        ),
    )
}

async fn fleet(State(state): State<Shared>, cx: PageContext) -> Html<String> {
    let file = state
        .config
        .fleet
        .as_ref()
        .map_or(String::new(), |f| f.file.display().to_string());
    let body = html! {
        div class="d-flex flex-wrap align-items-baseline gap-2 mb-3" {
            h1 class="h3 mb-0 me-auto" { "Fleet" }
            span class="small text-body-secondary" { code { (file) } }
            span class="small text-body-secondary" id="refreshed" {}
            button class="btn btn-outline-secondary btn-sm" type="button" id="fleet-refresh" { "Refresh" }
        }
        (card("Hosts", "fleet-hosts", loading()))
        div class="card shadow-sm mb-3" {
            div class="card-header d-flex flex-wrap align-items-center gap-2" {
                span class="fw-semibold me-auto" { "The fleet plan" }
                button class="btn btn-primary btn-sm" type="button" id="fleet-plan-go" { "Plan every host" }
            }
            div class="card-body" id="fleet-plan" {
                p class="text-body-secondary mb-0" {
                    "Each host's own ctm plans its host file, over SSH. To apply, run "
                    code { "ctm fleet apply " (file) }
                    " on the command line (docs/fleet.md)."
                }
            }
        }
    };
    layout(&state, &cx, Page::Fleet, body)
}

/// The pages this server serves: the host file's, the fleet's, or both;
/// `/` is the dashboard, or the fleet page without a host file.
pub fn routes(config: &Config) -> Router<Shared> {
    let mut routes = Router::new();
    if config.host_file.is_some() {
        routes = routes
            .route("/", get(dashboard))
            .route("/editor", get(editor))
            .route("/apply", get(apply))
            .route("/generations", get(generations))
            .route("/logs", get(logs_index))
            .route("/logs/{name}", get(logs_of));
    } else if config.fleet.is_some() {
        routes = routes.route("/", get(fleet));
    }
    if config.fleet.is_some() {
        routes = routes.route("/fleet", get(fleet));
    }
    routes.fallback(not_found)
}
