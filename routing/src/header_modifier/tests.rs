use super::*;
use crate::Severity;

fn compile(
    set: &[(&str, &str)],
    add: &[(&str, &str)],
    remove: &[&str],
) -> (HeaderModifier, Vec<Issue>) {
    let remove: Vec<String> = remove.iter().map(|s| s.to_string()).collect();
    let mut issues = Vec::new();
    let modifier = HeaderModifier::compile(
        set.iter().copied(),
        add.iter().copied(),
        &remove,
        "f",
        &mut issues,
    );
    (modifier, issues)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn values(map: &HeaderMap, name: &str) -> Vec<String> {
    map.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn set_add_remove() {
    let (modifier, issues) = compile(&[("X-Set", "new")], &[("X-Add", "two")], &[("X-Remove")]);
    assert!(issues.is_empty(), "{issues:?}");
    let mut map = headers(&[
        ("x-set", "old1"),
        ("x-set", "old2"),
        ("x-add", "one"),
        ("x-remove", "gone"),
        ("x-keep", "kept"),
    ]);
    modifier.apply(&mut map);
    assert_eq!(values(&map, "x-set"), ["new"]);
    assert_eq!(values(&map, "x-add"), ["one", "two"]);
    assert!(values(&map, "x-remove").is_empty());
    assert_eq!(values(&map, "x-keep"), ["kept"]);
}

#[test]
fn set_and_add_create_missing_headers() {
    let (modifier, _) = compile(&[("a", "1")], &[("b", "2")], &[]);
    let mut map = HeaderMap::new();
    modifier.apply(&mut map);
    assert_eq!(values(&map, "a"), ["1"]);
    assert_eq!(values(&map, "b"), ["2"]);
}

#[test]
fn remove_runs_last() {
    let (modifier, _) = compile(&[("a", "1")], &[("b", "2")], &["A", "b"]);
    let mut map = HeaderMap::new();
    modifier.apply(&mut map);
    assert!(map.is_empty(), "{map:?}");
}

#[test]
fn names_are_lowercased() {
    let (modifier, _) = compile(&[("X-Mixed-Case", "v")], &[], &["Other"]);
    assert_eq!(modifier.set[0].0.as_str(), "x-mixed-case");
    assert_eq!(modifier.remove[0].as_str(), "other");
}

/// (set, add, remove, field of the one issue, message start).
type InvalidCase = (
    Pairs,
    Pairs,
    &'static [&'static str],
    &'static str,
    &'static str,
);
type Pairs = &'static [(&'static str, &'static str)];

#[test]
fn invalid_entries_are_reported_and_skipped() {
    let cases: &[InvalidCase] = &[
        (
            &[("bad name", "v")],
            &[],
            &[],
            "f.set[0].name",
            "invalid header name",
        ),
        (
            &[],
            &[("", "v")],
            &[],
            "f.add[0].name",
            "invalid header name",
        ),
        (
            &[],
            &[],
            &["a", "b:c"],
            "f.remove[1]",
            "invalid header name",
        ),
        (
            &[("a", "line\nbreak")],
            &[],
            &[],
            "f.set[0].value",
            "invalid value",
        ),
        (
            &[("a", "1")],
            &[("A", "2")],
            &[],
            "f.add[0].name",
            "header a is already modified",
        ),
        (
            &[("a", "1"), ("a", "2")],
            &[],
            &[],
            "f.set[1].name",
            "header a is already modified",
        ),
        (
            &[],
            &[("a", "1"), ("A", "2")],
            &[],
            "f.add[1].name",
            "header a is already modified",
        ),
    ];
    for (set, add, remove, field, message) in cases {
        let (modifier, issues) = compile(set, add, remove);
        assert_eq!(issues.len(), 1, "{field}: {issues:?}");
        assert_eq!(
            (
                issues[0].severity,
                issues[0].reason,
                issues[0].field.as_str()
            ),
            (Severity::Error, IssueReason::Invalid, *field)
        );
        assert!(
            issues[0].message.starts_with(message),
            "{}",
            issues[0].message
        );
        let kept = modifier.set.len() + modifier.add.len() + modifier.remove.len();
        assert_eq!(kept, set.len() + add.len() + remove.len() - 1, "{field}");
    }
}
