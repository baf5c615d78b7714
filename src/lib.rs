//! ctm compiles one declarative host file into systemd-nspawn, networkd and
//! nftables configuration.
//!
//! The pipeline, one module per stage: [`config`] parses KDL or TOML into a
//! syntax tree checked against the vocabulary; [`validate`] turns it into a
//! [`model::Host`] whose types cannot hold a bad value, assigning addresses
//! with the help of the [`lock`] file; [`compile`] turns the model into the
//! files systemd and nft read. All three are pure: no file system, no
//! network. The [`cli`] is the only place with side effects.

pub mod apply;
pub mod backend;
pub mod cli;
pub mod compile;
pub mod config;
pub mod diagnostic;
pub mod fault;
pub mod live;
pub mod lock;
pub mod model;
pub mod plan;
pub mod schema;
pub mod state;
pub mod synthetic;
pub mod validate;
