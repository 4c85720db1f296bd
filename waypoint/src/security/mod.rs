//! The I/O side of the security decisions in `authz`: fetching JWKS (`jwks`), authenticating a
//! request's JWT (`jwt`), calling ext_authz servers (`ext_authz`), and the one sequence the
//! pipeline, the TCP path and `waypoint explain` all run (this file).

pub mod ext_authz;
pub mod jwks;
pub mod jwt;
