//! Istio's MeshConfig, read as istiod stores it: the ConfigMap `istio` in `istio-system`, key
//! `mesh`, a YAML document. Only the fields the waypoint acts on are typed; the rest are kept
//! or ignored as noted.

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;

/// The namespace and name of the ConfigMap holding the MeshConfig.
pub const MESH_CONFIG_MAP: (&str, &str) = ("istio-system", "istio");

/// The MeshConfig fields the waypoint reads.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// `trustDomain`; `None` keeps the waypoint's `--trust-domain` (Istio's default
    /// `cluster.local`).
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// `trustDomainAliases`: other trust domains whose identities are this mesh's.
    #[serde(default)]
    pub trust_domain_aliases: Vec<String>,
    /// `rootNamespace`: where mesh-wide policies live; `istio-system` by default.
    #[serde(default = "default_root_namespace")]
    pub root_namespace: String,
    /// `extensionProviders`, each as written: ext_authz providers are compiled by
    /// `authz::ext_authz`, telemetry providers by `telemetry`.
    #[serde(default)]
    pub extension_providers: Vec<serde_json::Value>,
    /// `defaultProviders` (tracing, metrics, accessLogging), as written.
    #[serde(default)]
    pub default_providers: Option<serde_json::Value>,
    /// `accessLogFile`.
    #[serde(default)]
    pub access_log_file: Option<String>,
    /// `accessLogEncoding`: TEXT or JSON.
    #[serde(default)]
    pub access_log_encoding: Option<String>,
    /// `accessLogFormat`: Envoy command operators.
    #[serde(default)]
    pub access_log_format: Option<String>,
    /// `enableTracing`.
    #[serde(default)]
    pub enable_tracing: Option<bool>,
    /// `defaultHttpRetryPolicy`, as written.
    #[serde(default)]
    pub default_http_retry_policy: Option<serde_json::Value>,
}

fn default_root_namespace() -> String {
    "istio-system".to_string()
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            trust_domain: None,
            trust_domain_aliases: Vec::new(),
            root_namespace: default_root_namespace(),
            extension_providers: Vec::new(),
            default_providers: None,
            access_log_file: None,
            access_log_encoding: None,
            access_log_format: None,
            enable_tracing: None,
            default_http_retry_policy: None,
        }
    }
}

impl MeshConfig {
    /// Reads `data.mesh` of the `istio-system/istio` ConfigMap. A missing `mesh` key is the
    /// default MeshConfig; YAML that is not a MeshConfig is an error naming the field, to be
    /// reported on the ConfigMap.
    pub fn from_config_map(cm: &ConfigMap) -> Result<MeshConfig, (String, String)> {
        let Some(text) = cm.data.as_ref().and_then(|d| d.get("mesh")) else {
            return Ok(MeshConfig::default());
        };
        let value: serde_json::Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ("data.mesh".to_string(), format!("not YAML: {e}")))?;
        if value.is_null() {
            return Ok(MeshConfig::default());
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            (
                format!("data.mesh.{}", e.path()),
                format!("{}; see istio.io's MeshConfig reference", e.inner()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(mesh: &str) -> ConfigMap {
        let mut data = std::collections::BTreeMap::new();
        data.insert("mesh".to_string(), mesh.to_string());
        ConfigMap {
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn reads_what_istiod_stores() {
        let m = MeshConfig::from_config_map(&cm(
            "trustDomain: example.org\ntrustDomainAliases: [old.org]\nextensionProviders:\n- name: ext\n  envoyExtAuthzHttp: {service: authz.foo.svc.cluster.local, port: 8000}\ndefaultConfig: {discoveryAddress: istiod:15012}\n",
        ))
        .expect("valid");
        assert_eq!(m.trust_domain.as_deref(), Some("example.org"));
        assert_eq!(m.trust_domain_aliases, vec!["old.org"]);
        assert_eq!(m.root_namespace, "istio-system");
        assert_eq!(m.extension_providers.len(), 1);
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let (field, _) =
            MeshConfig::from_config_map(&cm("trustDomainAliases: 3\n")).expect_err("invalid");
        assert_eq!(field, "data.mesh.trustDomainAliases");
        assert_eq!(
            MeshConfig::from_config_map(&ConfigMap::default()).expect("empty"),
            MeshConfig::default()
        );
    }
}
