//! Who is calling, and may they: workload identities (SPIFFE IDs) now; RequestAuthentication,
//! AuthorizationPolicy and PeerAuthentication decisions next. Pure: no sockets or clocks.
#![forbid(unsafe_code)]

mod identity;

pub use identity::{Identity, IdentityError};
