//! Path normalization (Istio's BASE) and `remote.ip`.

use super::*;

#[test]
fn base_normalization() {
    let table: &[(&str, &str)] = &[
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/..", "/"),
        ("/../../a", "/a"),
        ("/a//b", "/a//b"),
        ("/a//../b", "/a/b"),
        ("/a\\b", "/a/b"),
        ("\\a\\..\\b", "/b"),
        ("/%2e%2e/admin", "/admin"),
        ("/a/%2E/b", "/a/b"),
        ("/%61dmin", "/admin"),
        ("/%7E%2d", "/~-"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb/../c", "/c"),
        ("/a%20b", "/a%20b"),
        ("/a%zzb", "/a%zzb"),
        ("/a%4", "/a%4"),
        ("/a b", "/a%20b"),
        ("/é", "/%C3%A9"),
        ("/x?a=/../b", "/x?a=/../b"),
        ("/a/../x?q", "/x?q"),
        ("/x#frag", "/x"),
        // Envoy's own canonicalization cases.
        ("/a/b/../c", "/a/c"),
        ("/a/b/../../../../c", "/c"),
        ("/a/..\\c", "/c"),
        ("/%c0%af", "/%c0%af"),
        ("/%5c%25", "/%5c%25"),
        ("/a/b/%2E%2E/c", "/a/c"),
        // Istio's normalization integration cases for BASE.
        ("/app#foo", "/app"),
        ("/app//", "/app//"),
        ("/app/%2f", "/app/%2f"),
        ("/xyz%30..//abc", "/xyz0..//abc"),
        ("/app/%2E./admin", "/admin"),
        ("/app\\admin", "/app/admin"),
        ("*", "*"),
    ];
    for (input, expected) in table {
        assert_eq!(normalize_path(input).as_deref(), Ok(*expected), "{input}");
        // The fast check never skips a path that normalization changes.
        if is_normalized(input) {
            assert_eq!(input, expected, "{input} was skipped but changes");
        }
    }
    for plain in ["/", "/a/b", "/a//b/", "/a/b?x=%2E%2E&y=..", "/a.b/..c/.d"] {
        assert!(is_normalized(plain), "{plain}");
        assert_eq!(normalize_path(plain).as_deref(), Ok(plain));
    }
}

#[test]
fn envoy_rejects() {
    for bad in [
        "/a%00b",
        "/xyz/.%00../abc",
        "/xyz/%00.%00./abc",
        "/xyz/AAAAA%%0000/abc",
    ] {
        assert_eq!(
            normalize_path(bad).map_err(|e| e.status()),
            Err(400),
            "{bad}"
        );
    }
    for bad in ["relative/path", "", "?q", "*?x", "http://host/x"] {
        assert_eq!(
            normalize_path(bad).map_err(|e| e.status()),
            Err(404),
            "{bad}"
        );
    }
}

#[test]
fn remote_ip_is_the_rightmost_forwarded_address() {
    let src = "10.0.0.1".parse().ok();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().ok();
    assert_eq!(remote_ip(None, src), src);
    assert_eq!(remote_ip(Some("1.1.1.1"), src), ip("1.1.1.1"));
    assert_eq!(remote_ip(Some("1.1.1.1, 2.2.2.2"), src), ip("2.2.2.2"));
    assert_eq!(
        remote_ip(Some("1.1.1.1,2001:db8::1"), src),
        ip("2001:db8::1")
    );
    assert_eq!(remote_ip(Some("1.1.1.1, garbage"), src), src);
    assert_eq!(remote_ip(Some(""), src), src);
}
