//! The configuration source: Kubernetes objects read from a folder of YAML/JSON files, typed,
//! and checked, ready for [`crate::snapshot::Snapshot::build`].
//!
//! A folder is the same configuration a cluster would hold, so every error names the file and
//! the document index in it, the object (`Kind namespace/name`), the field path and the reason.

mod files;
mod generations;
mod mesh;
mod resources;

/// Parsing text without a folder, for the unit tests of the modules that consume documents.
#[cfg(test)]
pub(crate) mod files_for_tests {
    pub(crate) use super::files::parse_file as parse;
}

pub use files::{load_dir, Document, LoadError, Loaded};
pub use generations::Generations;
pub use mesh::{MeshConfig, MESH_CONFIG_MAP};
pub use resources::{
    Resolution, Resource, ServiceEntry, ServiceEntryEndpoint, ServiceEntryPort, ServiceEntrySpec,
};

use std::fmt;
use std::path::PathBuf;

/// Where an object came from: a file and the 0-based index of the YAML document in it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// The document's 0-based index in the file.
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)
    }
}

/// `Kind namespace/name` of an object, as far as it could be read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ObjectRef {
    /// The object's kind.
    pub kind: String,
    /// Its namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}
