//! The application layer: every use case of ctm, written once, driven by
//! both faces — the command line (`cli`) and the web editor (`web`).
//!
//! A use case opens a [`Session`] on a [`Target`] (the root, its lock,
//! the running system or files only), works through the stages below it
//! (load and validate, compile, plan, apply, state) and reports what it
//! does as typed [`Event`]s, which the command line prints and the web
//! server streams. Refusals are typed too ([`Refused`]): the faces decide
//! how to show them, never what they mean.
//!
//! | use case | where |
//! |---|---|
//! | check, compile a host file | [`load`] |
//! | plan, apply, confirm, roll back | [`Session::plan`], [`apply`] |
//! | list and compare generations, gc, recover | [`generations`] |
//! | status (`ctm status`, the dashboard) | [`status`] |
//! | start, stop, restart, pause, resume, kill, exec, stats, destroy, logs; the container page's document | [`containers`] |
//! | snapshot, list snapshots, restore | [`snapshots`] |
//! | backup, restore from an archive, export, import | [`backups`] |
//! | a restore's preview, and the restore it lets through (the web) | [`restores`] |
//! | the volumes view: use, quota, containers, archives | [`volumes`] |
//! | the Prometheus metrics of `ctm serve` | [`metrics`] |
//! | info | [`info`] |
//! | tunnel status | [`tunnels`] |
//! | up, down and the list of topologies; the plan of a move, shown first on the web | [`topologies`] |
//! | the editor's forms: one network or container read from, or put into, the host file's text | [`edit`] |
//! | fleets: check, plan, apply, status and push-binary over SSH | [`fleet`] |

pub mod apply;
pub mod backups;
pub mod containers;
pub mod edit;
pub mod events;
pub mod fleet;
pub mod generations;
pub mod images;
pub mod info;
pub mod load;
pub mod metrics;
pub mod planning;
pub mod preview;
pub mod refused;
pub mod restores;
pub mod session;
pub mod snapshots;
pub mod status;
pub mod topologies;
pub mod tunnels;
pub mod volumes;

pub use events::{Event, Events};
pub use refused::Refused;
pub use session::{Access, Session, Target};
