//! Istio's `networking.istio.io/v1` VirtualService, as users write it: the spec types
//! (parsed from the config folder unchanged) and, beside them, their compilation into the same
//! route tables HTTPRoutes compile into, so one matcher serves both.

mod compile;
mod cors;
mod matches;
mod virtual_service;

pub use compile::{
    compile_virtual_service, destination_port, DestinationLookup, DEFAULT_VS_REDIRECT_STATUS,
};
pub use virtual_service::*;

#[cfg(test)]
mod tests;
