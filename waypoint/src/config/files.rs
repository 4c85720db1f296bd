//! Reading a configuration folder: every `*.yaml`, `*.yml` and `*.json` file under it
//! (recursively, in path order), each possibly holding several YAML documents.

use super::resources::{parse_object, Resource};
use super::{ObjectRef, Origin};
use serde::Deserialize;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// One object read from the folder.
#[derive(Debug)]
pub struct Document {
    /// The file and document it came from.
    pub origin: Origin,
    /// Its kind, namespace and name.
    pub object: ObjectRef,
    /// The typed object.
    pub resource: Resource,
    /// Fields present in the file that this version does not read: reported, never silently
    /// dropped, so a user sees when a setting has no effect.
    pub unknown_fields: Vec<String>,
    /// The object's `metadata.generation`: as the file writes it, else counted by
    /// [`super::Generations`] (1 until a reload sees its spec change).
    pub generation: i64,
    /// `metadata.generation` as the file writes it, if it does.
    pub(super) declared_generation: Option<i64>,
    /// A digest of everything but `metadata` and `status`: what Kubernetes bumps the
    /// generation for when it changes.
    pub(super) spec_digest: u64,
}

/// A problem that kept a file, a document or an object from being read.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LoadError {
    /// The file.
    pub file: PathBuf,
    /// The document's index in the file, when the error is about one.
    pub document: Option<usize>,
    /// The object, as far as it could be read.
    pub object: Option<ObjectRef>,
    /// The field's path, when the error is about one.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(d) = self.document {
            write!(f, " document {d}")?;
        }
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Everything read from one folder.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every object read, in path and document order.
    pub documents: Vec<Document>,
    /// Everything that could not be read.
    pub errors: Vec<LoadError>,
}

/// Reads every configuration file under `dir`. I/O errors on the folder itself are returned;
/// problems with a single file or document are collected in [`Loaded::errors`] so that one
/// report can list all of them.
pub fn load_dir(dir: &Path) -> std::io::Result<Loaded> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    let mut loaded = Loaded::default();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => parse_file(&file, &text, &mut loaded),
            Err(e) => loaded.errors.push(LoadError {
                file: file.clone(),
                document: None,
                object: None,
                field: None,
                reason: format!("cannot read file: {e}"),
            }),
        }
    }
    Ok(loaded)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Editors and `kubectl` leave hidden swap/backup files next to the real ones; reading
        // them would load a half-written copy of an object twice.
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            collect_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses all documents of one file into `loaded`. JSON is a subset of YAML, so one parser
/// serves both and keeps line numbers in syntax errors.
pub(crate) fn parse_file(file: &Path, text: &str, loaded: &mut Loaded) {
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = match serde_json::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                loaded.errors.push(LoadError {
                    file: file.to_path_buf(),
                    document: Some(index),
                    object: None,
                    field: None,
                    reason: format!("not valid YAML: {e}"),
                });
                // After a syntax error the parser cannot find the next document reliably.
                return;
            }
        };
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        let origin = Origin {
            file: file.to_path_buf(),
            document: index,
        };
        let declared_generation = value
            .pointer("/metadata/generation")
            .and_then(serde_json::Value::as_i64);
        let spec_digest = spec_digest(&value);
        match parse_object(value) {
            Ok(parsed) => loaded.documents.push(Document {
                origin,
                object: parsed.object,
                resource: parsed.resource,
                unknown_fields: parsed.unknown_fields,
                generation: declared_generation.unwrap_or(1),
                declared_generation,
                spec_digest,
            }),
            Err(e) => loaded.errors.push(LoadError {
                file: file.to_path_buf(),
                document: Some(index),
                object: e.object,
                field: e.field,
                reason: e.reason,
            }),
        }
    }
}

/// A digest of the object without `metadata` and `status`, the same whatever the key order.
fn spec_digest(object: &serde_json::Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let serde_json::Value::Object(fields) = object {
        let spec = fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"));
        hash_fields(spec, &mut hasher);
    }
    hasher.finish()
}

fn hash_fields<'v>(
    fields: impl Iterator<Item = (&'v String, &'v serde_json::Value)>,
    hasher: &mut impl Hasher,
) {
    let mut fields: Vec<_> = fields.collect();
    fields.sort_by_key(|(k, _)| *k);
    for (k, v) in fields {
        k.hash(hasher);
        hash_value(v, hasher);
    }
}

fn hash_value(value: &serde_json::Value, hasher: &mut impl Hasher) {
    use serde_json::Value;
    // The tag keeps `[]` apart from `{}`, and "1" apart from 1.
    match value {
        Value::Object(fields) => {
            0u8.hash(hasher);
            hash_fields(fields.iter(), hasher);
        }
        Value::Array(items) => {
            1u8.hash(hasher);
            items.len().hash(hasher);
            items.iter().for_each(|v| hash_value(v, hasher));
        }
        Value::String(s) => {
            2u8.hash(hasher);
            s.hash(hasher);
        }
        scalar => {
            3u8.hash(hasher);
            scalar.to_string().hash(hasher);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Loaded {
        let mut loaded = Loaded::default();
        parse_file(Path::new("f.yaml"), text, &mut loaded);
        loaded
    }

    #[test]
    fn multi_document_files_keep_document_indexes() {
        let loaded = parse(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
        );
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let idx: Vec<_> = loaded.documents.iter().map(|d| d.origin.document).collect();
        assert_eq!(idx, vec![0, 2]);
    }

    #[test]
    fn yaml_syntax_errors_name_the_document_and_line() {
        let loaded = parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [\n");
        assert_eq!(loaded.documents.len(), 1);
        let e = &loaded.errors[0];
        assert_eq!(e.document, Some(1));
        assert!(e.reason.contains("line"), "{e}");
    }

    #[test]
    fn type_errors_name_the_field_path() {
        let loaded = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: n}\nspec:\n  ports:\n  - port: eighty\n",
        );
        let e = &loaded.errors[0];
        assert_eq!(e.field.as_deref(), Some("spec.ports[0].port"), "{e}");
        assert_eq!(
            e.object.as_ref().map(|o| o.to_string()).as_deref(),
            Some("Service n/s")
        );
    }
}
