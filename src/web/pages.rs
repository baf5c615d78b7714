//! The HTML pages: a Bootstrap layout and, for each page, the skeleton its
//! script (`web/src/`) fills in from the JSON API, so that what a page
//! shows is exactly what the API answers. maud escapes every value put
//! into the markup; the pages carry no inline script or style.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use super::auth::{CspNonce, Csrf};
use super::{Config, Shared};
use crate::engine::Access;
use crate::engine::tunnels::{Diagnosis, TunnelStatus, Tunnels};
use crate::model::{IfName, Name};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Dashboard,
    Editor,
    Apply,
    Generations,
    Images,
    Tunnels,
    Topologies,
    Logs,
    Fleet,
    /// One container (`/containers/NAME`): not in the navigation.
    Container,
}

impl Page {
    const ALL: [Page; 9] = [
        Page::Dashboard,
        Page::Editor,
        Page::Apply,
        Page::Generations,
        Page::Images,
        Page::Tunnels,
        Page::Topologies,
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
            Page::Images => "Images",
            Page::Tunnels => "Tunnels",
            Page::Topologies => "Topologies",
            Page::Logs => "Logs",
            Page::Fleet => "Fleet",
            Page::Container => "Container",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Page::Dashboard => "/",
            Page::Editor => "/editor",
            Page::Apply => "/apply",
            Page::Generations => "/generations",
            Page::Images => "/images",
            Page::Tunnels => "/tunnels",
            Page::Topologies => "/topologies",
            Page::Logs => "/logs",
            Page::Fleet => "/fleet",
            Page::Container => "/",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Page::Dashboard => "dashboard",
            Page::Editor => "editor",
            Page::Apply => "apply",
            Page::Generations => "generations",
            Page::Images => "images",
            Page::Tunnels => "tunnels",
            Page::Topologies => "topologies",
            Page::Logs => "logs",
            Page::Fleet => "fleet",
            Page::Container => "container",
        }
    }
}

fn head(title: &str) -> Markup {
    head_with(title, false)
}

/// The head of a page; the container page also loads its own bundle (the
/// graphs and the terminal), after the common one.
fn head_with(title: &str, container: bool) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · ctm" }
        // No icon: saves the browser a request that would only 404.
        link rel="icon" href="data:,";
        link rel="stylesheet" href="/assets/app.css";
        script src="/assets/app.js" defer {}
        @if container {
            link rel="stylesheet" href="/assets/container.css";
            script src="/assets/container.js" defer {}
        }
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
                    (head_with(page.title(), page == Page::Container))
                    meta name="csrf-token" content=(cx.csrf.0);
                    meta name="csp-nonce" content=(cx.nonce.0);
                }
                body data-page=(page.id()) data-host-file=[state.config.host_file.as_ref().map(|_| "yes")] class="bg-body-tertiary" {
                    a class="visually-hidden-focusable btn btn-primary position-absolute m-2 skip-link" href="#main" { "Skip to the content" }
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
                    main class="container-fluid pb-4" id="main" tabindex="-1" {
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

/// Tabs over panes (`pane`): the first is selected; `web/src/tabs.js`
/// switches them on click and with the arrow, Home and End keys.
fn tabs(label: &str, tabs: &[(&str, &str)]) -> Markup {
    html! {
        ul class="nav nav-tabs card-header-tabs" role="tablist" aria-label=(label) {
            @for (i, (pane, title)) in tabs.iter().enumerate() {
                li class="nav-item" role="presentation" {
                    button class=(if i == 0 { "nav-link active" } else { "nav-link" }) type="button" role="tab"
                        id=(format!("{pane}-tab")) data-tab=(pane) aria-controls=(pane)
                        aria-selected=(if i == 0 { "true" } else { "false" })
                        tabindex=(if i == 0 { "0" } else { "-1" }) { (title) }
                }
            }
        }
    }
}

fn pane(id: &str, shown: bool, body: Markup) -> Markup {
    html! {
        div class=(if shown { "tab-pane" } else { "tab-pane d-none" }) id=(id) role="tabpanel"
            aria-labelledby=(format!("{id}-tab")) tabindex="0" { (body) }
    }
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
        div class="d-flex flex-wrap gap-2 mb-2" role="search" {
            input class="form-control form-control-sm w-auto flex-grow-1" type="search" id="filter-text"
                placeholder="Search by name, address, image…" aria-label="Search the containers";
            select class="form-select form-select-sm w-auto" id="filter-state" aria-label="Show containers in this state" {
                option value="" { "Any state" }
                option value="running" { "Running" }
                option value="paused" { "Paused" }
                option value="stopped" { "Stopped" }
                option value="drift" { "Drifted" }
            }
        }
        (card("Containers", "containers", loading()))
        div class="row g-3" {
            div class="col-lg-6" { (card("Networks", "networks", loading())) }
            div class="col-lg-6" { (card("Tunnels", "tunnels", loading())) }
        }
        div class="mt-3" { (card("Volumes", "volumes", loading())) }
    };
    layout(&state, &cx, Page::Dashboard, body)
}

/// The place for a field's error (editor.js fills it and marks the field
/// invalid), announced when it appears.
fn feedback(id: &str) -> Markup {
    html! { div class="invalid-feedback" id=(format!("{id}-error")) aria-live="polite" {} }
}

fn text_input(id: &str, label: &str, placeholder: &str, help: Option<&str>) -> Markup {
    html! {
        div class="mb-2" {
            label class="form-label small mb-1" for=(id) { (label) }
            input class="form-control form-control-sm" type="text" id=(id) name=(id) placeholder=(placeholder);
            (feedback(id))
            @if let Some(help) = help { div class="form-text" { (help) } }
        }
    }
}

/// A choice among the names of a kind the text has (filled by editor.js),
/// with "none" first.
fn select_input(id: &str, label: &str, kind: &str, help: Option<&str>) -> Markup {
    html! {
        div class="mb-2" {
            label class="form-label small mb-1" for=(id) { (label) }
            select class="form-select form-select-sm" id=(id) name=(id) data-names=(kind) {
                option value="" { "none" }
            }
            (feedback(id))
            @if let Some(help) = help { div class="form-text" { (help) } }
        }
    }
}

/// A choice among fixed values: `choices` (value, label), the first the
/// default.
fn choice_input(id: &str, label: &str, choices: &[(&str, String)], help: &str) -> Markup {
    html! {
        div class="mb-2" {
            label class="form-label small mb-1" for=(id) { (label) }
            select class="form-select form-select-sm" id=(id) name=(id) {
                @for (value, text) in choices {
                    option value=(value) { (text) }
                }
            }
            (feedback(id))
            div class="form-text" { (help) }
        }
    }
}

/// The choices of the container form's root field: every kind the
/// vocabulary allows, `auto` (the default) as not written.
fn root_choices() -> Vec<(&'static str, String)> {
    crate::model::RootMode::ALL
        .iter()
        .map(|kind| match kind {
            crate::model::RootMode::Auto => ("", "auto (default)".to_string()),
            other => (other.as_str(), other.as_str().to_string()),
        })
        .collect()
}

fn textarea_input(id: &str, label: &str, placeholder: &str, help: &str) -> Markup {
    html! {
        div class="mb-2" {
            label class="form-label small mb-1" for=(id) { (label) }
            textarea class="form-control form-control-sm font-monospace" id=(id) name=(id) rows="2" placeholder=(placeholder) {}
            (feedback(id))
            div class="form-text" { (help) }
        }
    }
}

fn check_input(id: &str, label: &str) -> Markup {
    html! {
        div class="form-check form-check-inline" {
            input class="form-check-input" type="checkbox" id=(id) name=(id) checked[id == "container-autostart"];
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
                div class="col-sm-6" { (select_input("container-template", "Template (from)", "template", None)) }
                div class="col-sm-6" { (select_input("container-image", "Image", "image", Some("None: the template's."))) }
            }
            div class="row g-2" {
                div class="col-sm-4" { (select_input("container-network", "Network", "network", None)) }
                div class="col-sm-4" { (text_input("container-ipv4", "IPv4", "auto", None)) }
                div class="col-sm-4" { (text_input("container-ipv6", "IPv6", "auto", None)) }
            }
            (textarea_input("container-forwards", "Port forwards", "tcp 8080 80", "One a line: protocol, host port, container port; add no-loopback to keep 127.0.0.1 and ::1 out."))
            (textarea_input("container-binds", "Bind mounts", "/srv/www /var/www read-only", "One a line: host path, container path (optional), then read-only and idmap if wanted."))
            div class="row g-2" {
                div class="col-sm-6" { (text_input("container-memory", "Memory limit", "512M", None)) }
                div class="col-sm-6" { (text_input("container-cpus", "CPUs", "1.5", None)) }
            }
            (choice_input("container-root", "Root file system", &root_choices(), "How the tree is made from the image; overlay shares the image's files (not with a directory image). Only a new container's tree is made so."))
            (textarea_input("container-environment", "Environment", "TZ=Etc/UTC", "One a line: NAME=value."))
            (textarea_input("container-keys", "SSH authorized keys", "ssh-ed25519 AAAA… user@laptop", "One key a line."))
            div class="mb-2" {
                (check_input("container-autostart", "Start at boot"))
                (check_input("container-docker", "Docker inside"))
                (check_input("container-nested", "Nested containers"))
            }
        },
    )
}

async fn editor(State(state): State<Shared>, cx: PageContext) -> Html<String> {
    let body = html! {
        h1 class="visually-hidden" { "Edit the host file" }
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
                        // Read out as they change: the result of each check.
                        ul class="list-unstyled mb-0 small" id="diagnostics" aria-live="polite" aria-label="Problems in the host file" {}
                    }
                }
            }
            div class="col-xl-5" {
                div class="card shadow-sm" {
                    div class="card-header" {
                        (tabs("Plan and forms", &[("plan-pane", "Plan"), ("network-pane", "Network"), ("container-pane", "Container")]))
                    }
                    div class="card-body" {
                        (pane("plan-pane", true, html! { div id="plan" { (loading()) } }))
                        (pane("network-pane", false, network_form()))
                        (pane("container-pane", false, container_form()))
                    }
                }
            }
        }
        div class="modal-backdrop-lite d-none" id="conflict" {
            div class="card shadow border-danger" {
                div class="card-header text-bg-danger" { "The host file changed on disk since it was loaded" }
                div class="card-body" {
                    p class="small" { "Someone else saved it. Their change, from the text you loaded to the text on disk now:" }
                    pre class="diff small" id="conflict-diff" tabindex="0" {}
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

/// The images, with the columns of `ctm images`; rendered here, since
/// they change only with an apply, a pull or a gc.
async fn images(State(state): State<Shared>, cx: PageContext) -> Html<String> {
    let target = state.target();
    let listed = state
        .workers
        .run(0, move || {
            Ok(crate::engine::images::list(
                &target,
                crate::engine::Access::ReadShared,
                &mut super::api::server_log,
            )?)
        })
        .await;
    let body = html! {
        h1 class="h3 mb-3" { "Images" }
        @match listed {
            Err(e) => div class="alert alert-danger" role="alert" {
                (e.body["error"].as_str().unwrap_or("the images could not be read"))
            },
            Ok(list) if list.is_empty() => p class="text-body-secondary" {
                "No images: the current generation uses none, and the store keeps none."
            },
            Ok(list) => div class="table-responsive" {
                table class="table table-sm align-middle" id="images" {
                    thead { tr { th { "Name" } th { "Source" } th { "Digest" } th class="text-end" { "Size" } th { "Containers" } th { span class="visually-hidden" { "Actions" } } } }
                    tbody {
                        @for i in &list {
                            tr {
                                td class="fw-semibold" { (i.name) }
                                td { code class="text-break" { (i.source) } }
                                td { @if let Some(d) = &i.digest { code title=(d) { (d.chars().take(19).collect::<String>()) "…" } } @else { "–" } }
                                td class="text-end text-nowrap" { @if let Some(s) = i.size { (format!("{:.1} MiB", s as f64 / f64::from(1 << 20))) } @else { "not pulled yet" } }
                                td {
                                    @if i.current { (i.containers.join(", ")) }
                                    @else { span class="text-body-secondary" { "an older generation's (ctm gc removes it)" } }
                                }
                                td class="text-end text-nowrap" {
                                    // Pull takes the current generation's definition.
                                    @if i.current { button type="button" class="btn btn-outline-primary btn-sm me-1" data-pull=(i.name) { "Pull" } }
                                    @if i.size.is_some() { button type="button" class="btn btn-outline-danger btn-sm" data-remove=(i.name) { "Remove" } }
                                }
                            }
                        }
                    }
                }
            },
        }
        div id="image-progress" class="mt-3" {}
    };
    layout(&state, &cx, Page::Images, body)
}

#[derive(serde::Deserialize)]
struct TunnelsQuery {
    /// The tunnel whose Diagnose button was pressed.
    diagnose: Option<String>,
}

/// The tunnels with their live state, as `ctm tunnel status` shows them,
/// each with a Diagnose button; pressing it loads the page again with
/// `?diagnose=NAME`, which adds what `ctm tunnel diagnose NAME` finds.
/// Rendered here, so that it needs no script: the diagnosis takes a few
/// seconds (it pings the remote endpoint), and the browser shows that it
/// is loading.
async fn tunnels(
    State(state): State<Shared>,
    cx: PageContext,
    Query(query): Query<TunnelsQuery>,
) -> Html<String> {
    let target = state.target();
    let listed = state
        .workers
        .run(0, move || {
            Ok(crate::engine::tunnels::status(
                &target,
                None,
                Access::ReadShared,
                &mut super::api::server_log,
            )?)
        })
        .await;
    let diagnosis = match query.diagnose {
        None => None,
        Some(name) => Some(match IfName::parse(&name) {
            Err(e) => Err(e),
            Ok(name) => {
                let target = state.target();
                state
                    .workers
                    .run(0, move || {
                        Ok(crate::engine::tunnels::diagnose(
                            &target,
                            name.as_str(),
                            Access::ReadShared,
                            &mut super::api::server_log,
                        )?)
                    })
                    .await
                    .map_err(|e| error_text(&e, "the tunnel could not be diagnosed"))
            }
        }),
    };
    let body = html! {
        div class="d-flex flex-wrap align-items-baseline gap-2 mb-3" {
            h1 class="h3 mb-0 me-auto" { "Tunnels" }
            a class="btn btn-outline-secondary btn-sm" href="/tunnels" { "Refresh" }
        }
        @if let Some(diagnosis) = &diagnosis {
            (diagnosis_card(diagnosis))
        }
        @match &listed {
            Err(e) => div class="alert alert-danger" role="alert" {
                (error_text(e, "the tunnels could not be read"))
            },
            Ok(list) => (tunnel_table(list)),
        }
    };
    layout(&state, &cx, Page::Tunnels, body)
}

fn error_text(e: &super::ApiError, otherwise: &str) -> String {
    let mut text = e.body["error"].as_str().unwrap_or(otherwise).to_string();
    if let Some(help) = e.body["help"].as_str() {
        text = format!("{text} ({help})");
    }
    text
}

fn tunnel_table(list: &Tunnels) -> Markup {
    html! {
        @if let Some(note) = &list.note {
            div class="alert alert-warning" role="status" { (note) }
        }
        @if !list.live_system && !list.tunnels.is_empty() {
            p class="text-body-secondary small" {
                "This root is not the running system: the kernel is not asked for the links' state, and Diagnose needs the running system."
            }
        }
        @if list.tunnels.is_empty() {
            p class="text-body-secondary" {
                @match list.generation {
                    Some(n) => { "No tunnels in generation " (n) "." },
                    None => "No tunnels: nothing has been applied yet.",
                }
            }
        } @else {
            div class="table-responsive" {
                table class="table table-sm align-middle" id="tunnels" {
                    thead { tr { th { "Name" } th { "Kind" } th { "Endpoints" } th { "Link" } th { "Traffic" } th { "Underlay" } th { "Problems" } th {} } }
                    tbody {
                        @for t in &list.tunnels { (tunnel_row(t, list.live_system)) }
                    }
                }
            }
        }
    }
}

fn tunnel_row(t: &TunnelStatus, live_system: bool) -> Markup {
    let mut kind = t.kind.to_string();
    if let Some(id) = t.id {
        kind.push_str(&format!(" id {id}"));
    }
    if let Some(port) = t.port {
        kind.push_str(&format!(" port {port}"));
    }
    let mtu = |m: Option<String>| m.unwrap_or_else(|| "?".into());
    html! {
        tr data-tunnel=(t.name) {
            td class="fw-semibold" { (t.name) }
            td class="text-nowrap" { (kind) }
            td class="font-monospace small" {
                (t.local) " → " (t.remote)
                @if let Some(device) = &t.device { " via " (device) }
                @if !t.addresses.is_empty() { div class="text-body-secondary" { (t.addresses.join(", ")) } }
            }
            @match &t.live {
                None => td colspan="3" class="text-body-secondary small" {
                    @if live_system { "the system did not report this tunnel" } @else { "not asked" }
                },
                Some(live) => {
                    td class="small" {
                        @if !live.exists { span class="badge text-bg-danger" { "missing" } }
                        @else {
                            @if live.up { span class="badge text-bg-success" { "up" } }
                            @else { span class="badge text-bg-danger" { "down" } }
                            " " (live.oper_state)
                            div class="text-body-secondary text-nowrap" {
                                "MTU " (mtu(live.mtu.map(|m| m.to_string())))
                                " (expected " (mtu(t.expected_mtu.map(|m| m.to_string()))) ")"
                            }
                        }
                    }
                    td class="small text-nowrap" {
                        @if let Some(c) = live.counters {
                            div { "in " (c.rx_packets) " packets" @if c.rx_errors + c.rx_dropped > 0 { ", " (c.rx_errors) " errors, " (c.rx_dropped) " dropped" } }
                            div { "out " (c.tx_packets) " packets" @if c.tx_errors + c.tx_dropped > 0 { ", " (c.tx_errors) " errors, " (c.tx_dropped) " dropped" } }
                        } @else { "–" }
                    }
                    td class="small" {
                        @match &live.route_to_remote {
                            Some(route) => {
                                "via " (route.device.as_deref().unwrap_or("?"))
                                @if let Some(gateway) = route.gateway { ", gateway " (gateway) }
                            },
                            None => span class="text-danger" { "no route to " (t.remote) },
                        }
                    }
                },
            }
            td class="small" {
                @if t.problems.is_empty() {
                    @if t.live.is_some() { span class="text-success" { "none" } } @else { "–" }
                } @else {
                    ul class="mb-0 ps-3 text-danger" { @for p in &t.problems { li { (p) } } }
                }
            }
            td {
                form method="get" action="/tunnels#diagnosis" class="mb-0" {
                    input type="hidden" name="diagnose" value=(t.name);
                    button class="btn btn-outline-primary btn-sm" type="submit" disabled[!live_system] { "Diagnose" }
                }
            }
        }
    }
}

fn diagnosis_card(diagnosis: &Result<Diagnosis, String>) -> Markup {
    html! {
        div class="card shadow-sm mb-3" id="diagnosis" {
            @match diagnosis {
                Err(e) => {
                    div class="card-header fw-semibold" { "Diagnosis" }
                    div class="card-body" { div class="alert alert-danger mb-0" role="alert" { (e) } }
                },
                Ok(d) => {
                    div class="card-header fw-semibold" { "Diagnosis of " code { (d.tunnel.name) } }
                    div class="card-body" {
                        p class="small mb-2" {
                            "Kernel: " @match d.kernel_has_kind {
                                Some(true) => { "makes " (d.tunnel.kind) " links" },
                                Some(false) => { "cannot make " (d.tunnel.kind) " links" },
                                None => "not known",
                            }
                            br;
                            "Remote: " @match d.remote_answers {
                                Some(true) => { (d.tunnel.remote) " answers ping" },
                                Some(false) => { (d.tunnel.remote) " does not answer ping" },
                                None => "not asked (a multicast group)",
                            }
                        }
                        @if d.findings.is_empty() {
                            p class="text-success mb-0" { "Nothing wrong found from this end." }
                        } @else {
                            ol class="mb-0" id="findings" {
                                @for f in &d.findings {
                                    li class="mb-2" {
                                        div class="fw-semibold" { (f.cause) }
                                        div class="small" { span class="text-body-secondary" { "Seen: " } (f.evidence) }
                                        div class="small" {
                                            span class="text-body-secondary" { "Fix: " } (f.fix)
                                            @if f.fixed_by_apply { " " span class="badge text-bg-info" { "an apply repairs this" } }
                                        }
                                    }
                                }
                            }
                            @if d.fixable() {
                                p class="small text-body-secondary mt-2 mb-0" {
                                    "To repair what an apply repairs, apply the current generation again (the Apply page), or run "
                                    code { "ctm tunnel diagnose " (d.tunnel.name) " --fix" } "."
                                }
                            }
                        }
                    }
                },
            }
        }
    }
}

/// The topologies page: topologies.js fills the list from
/// `GET /api/topologies`; Up and Down show the plan in the dialog, then
/// apply it as a job whose progress shows under the list.
async fn topologies(State(state): State<Shared>, cx: PageContext) -> Html<String> {
    let refused = state
        .may_change()
        .err()
        .map(|e| e.body["error"].as_str().unwrap_or_default().to_string());
    let body = html! {
        h1 class="h3 mb-3" { "Topologies" }
        div class="card shadow-sm mb-3" {
            div class="card-header fw-semibold" { "Every topology of the current generation" }
            div class="card-body" id="topologies" data-refused=[refused] { (loading()) }
        }
        (card("Progress", "topology-progress", html! { p class="text-body-secondary mb-0" { "Nothing running." } }))
        div class="modal-backdrop-lite d-none" id="topology-dialog" role="dialog" aria-modal="true" aria-labelledby="topology-dialog-title" {
            div class="card shadow" {
                div class="card-header fw-semibold" id="topology-dialog-title" {}
                div class="card-body" {
                    div id="topology-plan" {}
                    div class="d-flex flex-wrap gap-2 mt-3" {
                        button class="btn btn-outline-secondary btn-sm" type="button" id="topology-cancel" { "Cancel" }
                        button class="btn btn-primary btn-sm" type="button" id="topology-go" disabled { "Apply" }
                    }
                }
            }
        }
    };
    layout(&state, &cx, Page::Topologies, body)
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
                pre class="journal mb-0" id="journal" tabindex="0" aria-label="The journal" {}
            }
        }
    };
    layout(state, cx, Page::Logs, body)
}

async fn container_page(
    State(state): State<Shared>,
    cx: PageContext,
    Path(name): Path<String>,
) -> Response {
    let Ok(name) = Name::parse(&name) else {
        return not_found().await.into_response();
    };
    let name = name.as_str();
    let refused = state
        .may_change()
        .err()
        .map(|e| e.body["error"].as_str().unwrap_or_default().to_string());
    let body = html! {
        div class="d-flex flex-wrap align-items-center gap-2 mb-3" data-name=(name) id="container-head" {
            h1 class="h3 mb-0 me-auto" { "Container " code { (name) } }
            span id="state" aria-live="polite" {}
            div class="btn-group btn-group-sm flex-wrap" role="group" aria-label="Act on the container" id="actions" data-refused=[refused.as_deref()] {
                button class="btn btn-outline-success" type="button" data-verb="start" { "Start" }
                button class="btn btn-outline-secondary" type="button" data-verb="stop" { "Stop" }
                button class="btn btn-outline-secondary" type="button" data-verb="restart" { "Restart" }
                button class="btn btn-outline-secondary" type="button" data-verb="pause" { "Pause" }
                button class="btn btn-outline-secondary" type="button" data-verb="resume" { "Resume" }
            }
            div class="input-group input-group-sm w-auto" {
                label class="input-group-text" for="signal" { "Signal" }
                select class="form-select" id="signal" {
                    @for signal in ["TERM", "KILL", "HUP", "INT", "USR1", "USR2"] { option value=(signal) { (signal) } }
                }
                button class="btn btn-outline-danger" type="button" data-verb="kill" { "Kill" }
            }
        }
        div id="result" aria-live="polite" {}
        div class="card shadow-sm" {
            div class="card-header" {
                (tabs("Container", &[("overview-pane", "Overview"), ("console-pane", "Console")]))
            }
            div class="card-body" {
                (pane("overview-pane", true, html! {
                    div class="row g-3" {
                        div class="col-lg-6" {
                            h2 class="h6" { "Settings" }
                            div id="settings" { (loading()) }
                        }
                        div class="col-lg-6" {
                            h2 class="h6" { "Use" }
                            div class="row g-2" {
                                div class="col-sm-6" { figure class="chart mb-0" id="cpu-chart" aria-label="CPU use over the last minutes" {} }
                                div class="col-sm-6" { figure class="chart mb-0" id="memory-chart" aria-label="Memory use over the last minutes" {} }
                            }
                            p class="small text-body-secondary" id="use-now" aria-live="off" {}
                        }
                    }
                    h2 class="h6 mt-3" { "Provisioning steps" }
                    div id="steps" {}
                    h2 class="h6 mt-3" { "Last log lines " a class="small fw-normal" href=(format!("/logs/{name}")) { "(follow the journal)" } }
                    pre class="journal journal-short mb-0" id="last-logs" tabindex="0" aria-label="The last log lines" {}
                }))
                (pane("console-pane", false, html! {
                    p class="small text-body-secondary" id="console-note" { "A login shell in the container, as " code { "ctm shell " (name) } " opens. It ends when you leave this tab's page." }
                    div class="d-flex gap-2 mb-2" {
                        button class="btn btn-primary btn-sm" type="button" id="console-open" { "Open a shell" }
                        button class="btn btn-outline-secondary btn-sm" type="button" id="console-close" disabled { "Close it" }
                    }
                    div id="terminal" class="terminal-box" aria-label="Terminal" {}
                }))
            }
        }
        div class="card shadow-sm mt-3" id="backups-card" data-refused=[refused.as_deref()] {
            div class="card-header d-flex flex-wrap align-items-center gap-2" {
                h2 class="h6 mb-0 me-auto" { "Snapshots & backups" }
                button class="btn btn-primary btn-sm" type="button" id="snapshot-now" { "Snapshot now" }
                button class="btn btn-primary btn-sm" type="button" id="backup-now" { "Back up now" }
            }
            div class="card-body" {
                div id="backup-result" aria-live="polite" {}
                div id="restore-preview" aria-live="polite" {}
                div class="row g-3" {
                    div class="col-lg-6" {
                        h3 class="h6" { "Snapshots " span class="small fw-normal text-body-secondary" { "(" code { "ctm snapshots " (name) } ")" } }
                        div id="snapshots" { (loading()) }
                    }
                    div class="col-lg-6" {
                        h3 class="h6" { "Archives " span class="small fw-normal text-body-secondary" { "(the default directory and the " code { "backup" } " block's)" } }
                        div id="archives" { (loading()) }
                    }
                }
            }
        }
    };
    layout(&state, &cx, Page::Container, body).into_response()
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
            .route("/images", get(images))
            .route("/tunnels", get(tunnels))
            .route("/topologies", get(topologies))
            .route("/logs", get(logs_index))
            .route("/logs/{name}", get(logs_of))
            .route("/containers/{name}", get(container_page));
    } else if config.fleet.is_some() {
        routes = routes.route("/", get(fleet));
    }
    if config.fleet.is_some() {
        routes = routes.route("/fleet", get(fleet));
    }
    routes.fallback(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_form_offers_every_root_kind_the_vocabulary_allows() {
        let page = container_form().into_string();
        let start = page.find(r#"<select class="form-select form-select-sm" id="container-root""#);
        let select = &page[start.expect("a root field")..];
        let select = &select[..select.find("</select>").unwrap_or(select.len())];
        let offered: Vec<&str> = select
            .split(r#"<option value=""#)
            .skip(1)
            .filter_map(|o| o.split('"').next())
            .collect();
        // `auto` is offered as the default (not written).
        let wanted: Vec<&str> = crate::model::RootMode::ALL
            .iter()
            .map(|k| if k.is_auto() { "" } else { k.as_str() })
            .collect();
        assert_eq!(offered, wanted);
        assert!(offered.contains(&"overlay"), "{select}");
        // Each is a value the host file takes.
        for value in offered.iter().filter(|v| !v.is_empty()) {
            assert!(crate::model::RootMode::parse(value).is_ok(), "{value}");
        }
        // The vocabulary's own description of the value names each kind.
        let (_, spec) = crate::config::vocab::walk()
            .into_iter()
            .find(|(path, _)| path == &["container", "root"])
            .expect("container root in the vocabulary");
        for kind in crate::model::RootMode::ALL {
            let word = format!("`{}`", kind.as_str());
            assert!(spec.doc.contains(&word), "{word} missing from {}", spec.doc);
            assert!(
                spec.args.iter().any(|a| a.doc.contains(&word)),
                "{word} missing from {:?}",
                spec.args
            );
        }
    }
}
