//! Replays the Gateway API conformance cases against the real waypoint, in-process.
//!
//! A case needs backends that report back what reached them; [`echo`] provides them, speaking
//! the same JSON as the upstream `echo-basic` server so that expectations written for the
//! upstream suite can be compared field by field.
#![forbid(unsafe_code)]

pub mod echo;

pub use echo::{spawn_echo, EchoIdentity, EchoServer};
