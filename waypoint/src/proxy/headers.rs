//! Gateway API header modifiers applied through pingora's header API, which keeps the original
//! header-name casing for HTTP/1.1 in step with the map.

use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use routing::HeaderModifier;

/// Applies `m` (set, then add, then remove) to `h`.
pub fn apply_modifier<H: EditHeaders>(m: &HeaderModifier, h: &mut H) -> Result<()> {
    for (name, value) in &m.set {
        h.set(name, value)?;
    }
    for (name, value) in &m.add {
        h.add(name, value)?;
    }
    for name in &m.remove {
        h.remove(name);
    }
    Ok(())
}

/// The header edits pingora offers on both request and response headers, which share no trait.
pub trait EditHeaders {
    /// Replaces every value of `name` with `value`.
    fn set(&mut self, name: &http::HeaderName, value: &http::HeaderValue) -> Result<()>;
    /// Adds `value` after any existing values of `name`.
    fn add(&mut self, name: &http::HeaderName, value: &http::HeaderValue) -> Result<()>;
    /// Removes every value of `name`.
    fn remove(&mut self, name: &http::HeaderName);
}

macro_rules! edit_headers_for {
    ($t:ty) => {
        impl EditHeaders for $t {
            fn set(&mut self, name: &http::HeaderName, value: &http::HeaderValue) -> Result<()> {
                self.insert_header(name.clone(), value.clone()).map(|_| ())
            }
            fn add(&mut self, name: &http::HeaderName, value: &http::HeaderValue) -> Result<()> {
                self.append_header(name.clone(), value.clone()).map(|_| ())
            }
            fn remove(&mut self, name: &http::HeaderName) {
                self.remove_header(name);
            }
        }
    };
}

edit_headers_for!(RequestHeader);
edit_headers_for!(ResponseHeader);
