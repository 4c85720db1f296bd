//! The hashes consistent hashing is built on, and the affinity cookie the proxy sets when a
//! request has none. Stable within and across processes (no per-process seed), so a client's
//! cookie keeps meaning the same endpoint after a restart.

use super::AffinityCookie;

/// A stable 64-bit hash of `bytes` (FNV-1a, then a finalizer that spreads its bits).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finalizer: every input bit affects every output bit.
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The value of a generated affinity cookie for a client at `source` (its address): as Envoy
/// does, a hash of the client's address, so the request that gets the cookie hashes (on the
/// cookie's value) to the same endpoint as the requests that carry it.
pub fn affinity_cookie_value(source: &str) -> String {
    format!("{:016x}", stable_hash(source.as_bytes()))
}

/// The `Set-Cookie` value for `cookie` carrying `value`, as Envoy writes it: quoted value,
/// `Max-Age` when the ttl is not zero (zero: a session cookie), `Path` when set, `HttpOnly`.
pub fn set_cookie_value(cookie: &AffinityCookie, value: &str) -> String {
    let mut out = format!("{}=\"{value}\"", cookie.name);
    if let Some(ttl) = cookie.ttl.filter(|t| !t.is_zero()) {
        out.push_str(&format!("; Max-Age={}", ttl.as_secs().max(1)));
    }
    if let Some(path) = cookie.path.as_deref().filter(|p| !p.is_empty()) {
        out.push_str(&format!("; Path={path}"));
    }
    out.push_str("; HttpOnly");
    out
}
