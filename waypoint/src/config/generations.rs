//! `metadata.generation` for a folder: Kubernetes bumps an object's generation each time its
//! spec changes, and Gateway API status reports the generation it observed. A file may write
//! the generation itself; otherwise it is counted here across reloads of the folder.

use super::{Document, ObjectRef};
use std::collections::HashMap;

/// The generation and spec digest of every object the last load saw.
#[derive(Debug, Default)]
pub struct Generations {
    seen: HashMap<ObjectRef, (u64, i64)>,
}

impl Generations {
    /// Gives each document its generation: the one its file writes; else 1 for an object not
    /// seen by the last load, the same as then for an unchanged spec, one more for a changed
    /// one. An object that disappears is forgotten, so coming back it starts at 1 again, as a
    /// re-created Kubernetes object does.
    pub fn stamp(&mut self, documents: &mut [Document]) {
        let mut seen = HashMap::with_capacity(documents.len());
        for d in documents {
            d.generation = match (d.declared_generation, self.seen.get(&d.object)) {
                (Some(declared), _) => declared,
                (None, Some(&(digest, g))) if digest == d.spec_digest => g,
                (None, Some(&(_, g))) => g + 1,
                (None, None) => 1,
            };
            seen.insert(d.object.clone(), (d.spec_digest, d.generation));
        }
        self.seen = seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Loaded;

    fn load(yaml: &str) -> Vec<Document> {
        let mut loaded = Loaded::default();
        super::super::files::parse_file(std::path::Path::new("f.yaml"), yaml, &mut loaded);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.documents
    }

    fn route(labels: &str, port: u16) -> String {
        format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: n, labels: {{{labels}}}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules: [{{backendRefs: [{{name: web, port: {port}}}]}}]\n")
    }

    fn stamped(generations: &mut Generations, yaml: &str) -> i64 {
        let mut docs = load(yaml);
        generations.stamp(&mut docs);
        docs[0].generation
    }

    #[test]
    fn a_changed_spec_bumps_the_generation_and_an_unchanged_one_keeps_it() {
        let mut g = Generations::default();
        assert_eq!(stamped(&mut g, &route("", 80)), 1, "first seen");
        assert_eq!(stamped(&mut g, &route("", 80)), 1, "unchanged reload");
        assert_eq!(
            stamped(&mut g, &route("a: b", 80)),
            1,
            "metadata is not the spec"
        );
        assert_eq!(stamped(&mut g, &route("a: b", 8080)), 2, "spec changed");
        assert_eq!(stamped(&mut g, &route("a: b", 8080)), 2, "unchanged again");
        assert_eq!(
            stamped(
                &mut g,
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"
            ),
            1
        );
        assert_eq!(
            stamped(&mut g, &route("", 8080)),
            1,
            "deleted, then re-created"
        );
    }

    #[test]
    fn a_written_generation_wins() {
        let mut g = Generations::default();
        let yaml = route("", 80).replace("namespace: n,", "namespace: n, generation: 7,");
        assert_eq!(stamped(&mut g, &yaml), 7);
        assert_eq!(stamped(&mut g, &yaml.replace("port: 80", "port: 81")), 7);
    }

    #[test]
    fn key_order_is_not_a_change() {
        let mut g = Generations::default();
        let a = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: n}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80, name: http}]}\n";
        let b = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: n}\nspec: {ports: [{name: http, port: 80}], clusterIP: 10.0.0.1}\n";
        assert_eq!(stamped(&mut g, a), 1);
        assert_eq!(stamped(&mut g, b), 1);
    }
}
