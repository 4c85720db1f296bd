use super::*;

fn prefix(value: &str) -> PathMatch {
    PathMatch::Prefix {
        trimmed: value.strip_suffix('/').unwrap_or(value).to_owned(),
        written_chars: value.len(),
    }
}

fn replace_prefix(value: &str) -> PathModifier {
    let mut issues = Vec::new();
    let modifier = PathModifier::compile(true, Some(value), &[], "f", &mut issues);
    assert!(issues.is_empty(), "{issues:?}");
    modifier.expect("valid replacement")
}

#[test]
fn replace_prefix_match_works_on_path_elements() {
    // (matched prefix, replacement, request path, expected path)
    let cases = [
        ("/prefix/one", "/one", "/prefix/one/two", "/one/two"),
        ("/prefix/one", "/one", "/prefix/one", "/one"),
        ("/prefix/one", "/one", "/prefix/one/", "/one/"),
        ("/prefix/one/", "/one", "/prefix/one/two", "/one/two"),
        ("/prefix/one", "/one/", "/prefix/one/two", "/one/two"),
        ("/strip-prefix", "/", "/strip-prefix/three", "/three"),
        ("/strip-prefix", "/", "/strip-prefix", "/"),
        ("/strip-prefix", "/", "/strip-prefix/", "/"),
        ("/", "/xyz", "/", "/xyz"),
        ("/", "/xyz", "/bar", "/xyz/bar"),
        ("/", "/xyz/", "/bar/", "/xyz/bar/"),
        ("/", "/", "/bar", "/bar"),
        ("/foo", "/bar", "/foo/a/b/c", "/bar/a/b/c"),
        // Not on an element boundary: the prefix did not match, so nothing is replaced.
        ("/foo", "/bar", "/foobar", "/foobar"),
    ];
    for (matched, replacement, path, expected) in cases {
        assert_eq!(
            replace_prefix(replacement).apply(path, &prefix(matched)),
            expected,
            "prefix {matched} -> {replacement} on {path}"
        );
    }
}

#[test]
fn replace_full_path_ignores_the_request_path() {
    let m = PathModifier::ReplaceFullPath("/full".to_owned());
    assert_eq!(m.apply("/anything/at/all", &prefix("/anything")), "/full");
    assert_eq!(m.apply("/", &PathMatch::Exact("/".to_owned())), "/full");
}

#[test]
fn replace_prefix_with_another_match_type_keeps_the_path_and_is_reported() {
    let exact = RequestMatch {
        path: PathMatch::Exact("/foo".to_owned()),
        ..RequestMatch::any()
    };
    let mut issues = Vec::new();
    let m = PathModifier::compile(
        true,
        Some("/bar"),
        std::slice::from_ref(&exact),
        "f",
        &mut issues,
    );
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].field, "f.type");
    let m = m.expect("kept");
    assert_eq!(m.apply("/foo", &exact.path), "/foo");
}

#[test]
fn missing_or_relative_values_are_invalid() {
    for (prefix, value, field) in [
        (true, None, "f.replacePrefixMatch"),
        (false, None, "f.replaceFullPath"),
        (false, Some("relative"), "f.replaceFullPath"),
    ] {
        let mut issues = Vec::new();
        assert_eq!(
            PathModifier::compile(prefix, value, &[], "f", &mut issues),
            None
        );
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].field, field);
        assert_eq!(issues[0].reason, IssueReason::Invalid);
    }
}
