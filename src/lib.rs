//! ctm compiles one declarative host file into systemd-nspawn, networkd and
//! nftables configuration.
//!
//! The pipeline, one module per stage: [`config`] parses KDL or TOML into a
//! syntax tree checked against the vocabulary; [`validate`] turns it into a
//! [`model::Host`] whose types cannot hold a bad value, assigning addresses
//! with the help of the [`lock`] file; [`compile`] turns the model into the
//! files systemd and nft read; [`live`] reads what is on the host now;
//! [`plan`] says what must change and why; [`apply`] switches the host to a
//! new generation kept in the [`state`] store, or rolls it back.
//!
//! `config`, `validate`, `compile` and `plan` are pure: no file system, no
//! network. Side effects live at the edge, in [`backend`] (files and the
//! running system, behind the `System` trait), [`state`] and [`cli`]; [`web`]
//! is `ctm serve`, the web editor over the same functions as the CLI.

pub mod apply;
pub mod backend;
pub mod cli;
pub mod clock;
pub mod compile;
pub mod config;
pub mod cores;
pub mod diagnostic;
pub mod engine;
pub mod fault;
pub mod fs;
pub mod layout;
pub mod live;
pub mod lock;
pub mod model;
pub mod plan;
pub mod schema;
pub mod state;
pub mod status;
pub mod synthetic;
pub mod validate;
pub mod web;
