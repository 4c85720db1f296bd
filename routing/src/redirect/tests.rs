use super::*;

fn prefix(value: &str) -> PathMatch {
    PathMatch::Prefix {
        trimmed: value.strip_suffix('/').unwrap_or(value).to_owned(),
        written_chars: value.len(),
    }
}

fn redirect() -> Redirect {
    Redirect {
        scheme: None,
        hostname: None,
        path: None,
        port: None,
        status: DEFAULT_REDIRECT_STATUS,
        port_from: RedirectPort::GatewayApi,
    }
}

#[test]
fn location_follows_the_spec_defaults() {
    let root = prefix("/");
    let orig = prefix("/original-prefix");
    let input = |scheme, listener_port, path, query| RedirectInput {
        scheme,
        host: "example.com",
        listener_port,
        request_port: None,
        path,
        query,
        matched: &root,
    };
    // (what, filter, request, expected (status, location))
    let cases: Vec<(&str, Redirect, RedirectInput<'_>, (u16, &str))> = vec![
        (
            "nothing set: same URL on the listener port, which http:80 omits",
            redirect(),
            input("http", 80, "/a", None),
            (302, "http://example.com/a"),
        ),
        (
            "listener port other than the default is kept",
            redirect(),
            input("http", 8080, "/a", None),
            (302, "http://example.com:8080/a"),
        ),
        (
            "scheme https without a port: 443, omitted",
            Redirect {
                scheme: Some("https"),
                ..redirect()
            },
            input("http", 8080, "/a", None),
            (302, "https://example.com/a"),
        ),
        (
            "scheme http from an https listener: 80, omitted",
            Redirect {
                scheme: Some("http"),
                ..redirect()
            },
            input("https", 8443, "/a", None),
            (302, "http://example.com/a"),
        ),
        (
            "explicit port wins over the scheme's",
            Redirect {
                scheme: Some("https"),
                port: Some(8443),
                ..redirect()
            },
            input("http", 80, "/a", None),
            (302, "https://example.com:8443/a"),
        ),
        (
            "port 443 on https is omitted even when explicit",
            Redirect {
                scheme: Some("https"),
                port: Some(443),
                ..redirect()
            },
            input("http", 80, "/a", None),
            (302, "https://example.com/a"),
        ),
        (
            "port 443 on http is kept",
            Redirect {
                port: Some(443),
                ..redirect()
            },
            input("http", 80, "/a", None),
            (302, "http://example.com:443/a"),
        ),
        (
            "https request on its default port",
            redirect(),
            input("https", 443, "/a", None),
            (302, "https://example.com/a"),
        ),
        (
            "hostname, port and status",
            Redirect {
                hostname: Some("example.org".to_owned()),
                port: Some(8083),
                status: 301,
                ..redirect()
            },
            input("http", 80, "/port-and-host", None),
            (301, "http://example.org:8083/port-and-host"),
        ),
        (
            "the query is preserved",
            Redirect {
                path: Some(PathModifier::ReplaceFullPath("/new".to_owned())),
                ..redirect()
            },
            input("http", 80, "/old", Some("a=1&b=2")),
            (302, "http://example.com/new?a=1&b=2"),
        ),
    ];
    for (what, filter, req, (status, location)) in cases {
        assert_eq!(
            filter.response(&req),
            (status, location.to_owned()),
            "{what}"
        );
    }
    let prefixed = Redirect {
        path: Some(PathModifier::ReplacePrefixMatch(
            "/replacement-prefix".to_owned(),
        )),
        ..redirect()
    };
    let req = RedirectInput {
        matched: &orig,
        ..input("http", 80, "/original-prefix/lemon", Some("x=y"))
    };
    assert_eq!(
        prefixed.response(&req).1,
        "http://example.com/replacement-prefix/lemon?x=y"
    );
    let to_root = Redirect {
        path: Some(PathModifier::ReplacePrefixMatch(String::new())),
        ..redirect()
    };
    let req = RedirectInput {
        matched: &orig,
        ..input("http", 80, "/original-prefix", None)
    };
    assert_eq!(to_root.response(&req).1, "http://example.com/");
}

#[test]
fn rewrite_changes_only_what_it_names() {
    let matched = prefix("/prefix/one");
    let host_only = UrlRewrite {
        hostname: Some("elsewhere.example".to_owned()),
        path: None,
    };
    assert_eq!(host_only.rewrite_path("/prefix/one/two", &matched), None);
    let prefixed = UrlRewrite {
        hostname: None,
        path: Some(PathModifier::ReplacePrefixMatch("/one".to_owned())),
    };
    assert_eq!(
        prefixed
            .rewrite_path("/prefix/one/two", &matched)
            .as_deref(),
        Some("/one/two")
    );
}
