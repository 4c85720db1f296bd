//! Replays the Gateway API conformance cases (a `gwapi-conformance-cases/v1` file) against the
//! real waypoint binary, with echo backends standing in for upstream's pods.
//!
//! A case needs backends that report back what reached them; [`echo`] provides them, speaking
//! the same JSON as the upstream `echo-basic` server so that expectations written for the
//! upstream suite can be compared field by field. [`manifests`] deploys a test's objects into a
//! config folder, [`run`] drives the waypoint and the cases, [`judge`] and [`status`] decide.
#![forbid(unsafe_code)]

pub mod bespoke;
pub mod cases;
pub mod client;
pub mod echo;
pub mod eventually;
pub mod features;
pub mod generated_tls;
pub mod judge;
pub mod manifests;
pub mod report;
pub mod run;
pub mod status;
pub mod verdict;
pub mod waypoint_proc;

pub use echo::{spawn_echo, EchoIdentity, EchoServer};
