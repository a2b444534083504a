//! The objects the server holds and the API semantics meshca depends on: resourceVersion on
//! every write, optimistic concurrency on replace and patch, AlreadyExists on create, a
//! namespace that must exist, and validation of what a Secret may contain.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

/// The resources served: plural name, kind, API group version, namespaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// `v1` Namespaces (cluster-scoped).
    Namespaces,
    /// `v1` Secrets.
    Secrets,
    /// `v1` ConfigMaps.
    ConfigMaps,
    /// `apps/v1` Deployments.
    Deployments,
    /// `apps/v1` DaemonSets (ztunnel's).
    DaemonSets,
    /// `v1` Pods (listed to judge their sidecars).
    Pods,
}

impl Resource {
    /// The resource's plural, as URLs spell it.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Namespaces => "namespaces",
            Resource::Secrets => "secrets",
            Resource::ConfigMaps => "configmaps",
            Resource::Deployments => "deployments",
            Resource::DaemonSets => "daemonsets",
            Resource::Pods => "pods",
        }
    }
    /// The object's `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Namespaces => "Namespace",
            Resource::Secrets => "Secret",
            Resource::ConfigMaps => "ConfigMap",
            Resource::Deployments => "Deployment",
            Resource::DaemonSets => "DaemonSet",
            Resource::Pods => "Pod",
        }
    }
    /// The object's `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Deployments | Resource::DaemonSets => "apps/v1",
            _ => "v1",
        }
    }
    /// Whether it lives in a namespace.
    pub fn namespaced(self) -> bool {
        self != Resource::Namespaces
    }
}

/// A Kubernetes `Status` failure: HTTP code, reason, message, and the object it is about.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The HTTP status.
    pub code: u16,
    /// Kubernetes' reason (`NotFound`, `Conflict`, …).
    pub reason: &'static str,
    /// The message.
    pub message: String,
    /// The resource's kind, in `details`.
    pub kind: Option<String>,
    /// The object's name, in `details`.
    pub name: Option<String>,
}

impl Failure {
    /// A failure with no details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            reason,
            message: message.into(),
            kind: None,
            name: None,
        }
    }
    fn about(mut self, r: Resource, name: &str) -> Self {
        self.kind = Some(r.plural().into());
        self.name = Some(name.into());
        self
    }
    /// 404 for the object `name` of `r`.
    pub fn not_found(r: Resource, name: &str) -> Self {
        Failure::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", r.plural()),
        )
        .about(r, name)
    }
    fn invalid(r: Resource, name: &str, why: impl Into<String>) -> Self {
        Failure::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {}", r.kind(), why.into()),
        )
        .about(r, name)
    }
    fn conflict(r: Resource, name: &str) -> Self {
        Failure::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                r.plural()
            ),
        )
        .about(r, name)
    }

    /// The `Status` object the API server answers with.
    pub fn body(&self) -> Value {
        let mut v = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if self.kind.is_some() || self.name.is_some() {
            v["details"] = json!({ "name": self.name, "kind": self.kind });
        }
        v
    }
}

type Key = (Resource, String, String);

/// Every stored object, keyed by (resource, namespace or "", name).
#[derive(Default)]
pub struct Store {
    objects: BTreeMap<Key, Value>,
    revision: u64,
    uid: u64,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    /// Whether the namespace `ns` exists.
    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .contains_key(&(Resource::Namespaces, String::new(), ns.to_string()))
    }

    /// The object, or 404.
    pub fn get(&self, r: Resource, ns: &str, name: &str) -> Result<Value, Failure> {
        self.objects
            .get(&(r, ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| Failure::not_found(r, name))
    }

    /// Objects of `r` in `ns` (all namespaces when `None`) matching `k=v[,k=v]` labels.
    pub fn list(
        &self,
        r: Resource,
        ns: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Value, Failure> {
        let wanted: Vec<(&str, &str)> = match selector.filter(|s| !s.is_empty()) {
            None => vec![],
            Some(s) => s
                .split(',')
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.trim_end_matches('='), v))
                })
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Failure::new(
                        400,
                        "BadRequest",
                        format!("unsupported label selector {s:?}"),
                    )
                })?,
        };
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((kind, ons, _), _)| *kind == r && ns.is_none_or(|n| n == ons))
            .filter(|(_, v)| {
                wanted
                    .iter()
                    .all(|(k, want)| v["metadata"]["labels"][*k].as_str() == Some(*want))
            })
            .map(|(_, v)| v.clone())
            .collect();
        Ok(json!({
            "kind": format!("{}List", r.kind()), "apiVersion": r.api_version(),
            "metadata": { "resourceVersion": self.revision.to_string() },
            "items": items,
        }))
    }

    /// Creates the object (409 if it exists, 404 without its namespace).
    pub fn create(&mut self, r: Resource, ns: &str, mut obj: Value) -> Result<Value, Failure> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !valid_name(&name) {
            return Err(Failure::invalid(
                r,
                &name,
                "metadata.name: Invalid value: a lowercase RFC 1123 subdomain is required",
            ));
        }
        if r.namespaced() && !self.namespace_exists(ns) {
            return Err(Failure::not_found(Resource::Namespaces, ns));
        }
        let key = (r, ns.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(Failure::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", r.plural()),
            )
            .about(r, &name));
        }
        if let Some(meta_ns) = obj["metadata"]["namespace"].as_str()
            && r.namespaced()
            && meta_ns != ns
        {
            return Err(Failure::new(
                400,
                "BadRequest",
                "the namespace of the object does not match the namespace on the request",
            ));
        }
        self.normalise(r, &name, &mut obj, None)?;
        self.uid += 1;
        obj["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.uid));
        obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        if r == Resource::Deployments {
            obj["metadata"]["generation"] = json!(1);
        }
        if r == Resource::Namespaces {
            obj["status"] = json!({ "phase": "Active" });
        }
        Ok(self.commit(key, r, ns, obj))
    }

    /// PUT: the whole object; its resourceVersion, when given, must be the current one.
    pub fn replace(
        &mut self,
        r: Resource,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Value, Failure> {
        let key = (r, ns.to_string(), name.to_string());
        let current = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| Failure::not_found(r, name))?;
        if obj["metadata"]["name"].as_str() != Some(name) {
            return Err(Failure::new(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            ));
        }
        match obj["metadata"]["resourceVersion"].as_str() {
            Some(rv) if Some(rv) != current["metadata"]["resourceVersion"].as_str() => {
                return Err(Failure::conflict(r, name));
            }
            _ => {}
        }
        self.normalise(r, name, &mut obj, Some(&current))?;
        for k in ["uid", "creationTimestamp"] {
            obj["metadata"][k] = current["metadata"][k].clone();
        }
        if r == Resource::Deployments {
            let g = current["metadata"]["generation"].as_u64().unwrap_or(1);
            let bump = if obj["spec"] != current["spec"] { 1 } else { 0 };
            obj["metadata"]["generation"] = json!(g + bump);
        }
        Ok(self.commit(key, r, ns, obj))
    }

    /// PATCH (merge or strategic merge; for the maps and scalars meshca patches they agree).
    pub fn patch(
        &mut self,
        r: Resource,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, Failure> {
        let current = self.get(r, ns, name)?;
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(Failure::conflict(r, name));
        }
        let mut merged = current.clone();
        merge_patch(&mut merged, patch);
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        self.replace(r, ns, name, merged)
    }

    /// Deletes the object, or 404.
    pub fn delete(&mut self, r: Resource, ns: &str, name: &str) -> Result<Value, Failure> {
        let key = (r, ns.to_string(), name.to_string());
        self.objects
            .remove(&key)
            .ok_or_else(|| Failure::not_found(r, name))
    }

    /// Fills in what the API server fills in and refuses what it refuses.
    fn normalise(
        &self,
        r: Resource,
        name: &str,
        obj: &mut Value,
        current: Option<&Value>,
    ) -> Result<(), Failure> {
        if !obj.is_object() || !obj["metadata"].is_object() {
            return Err(Failure::new(
                400,
                "BadRequest",
                "body is not an object with metadata",
            ));
        }
        if let Some(kind) = obj["kind"].as_str()
            && kind != r.kind()
        {
            return Err(Failure::new(
                400,
                "BadRequest",
                format!("kind {kind} sent to the {} endpoint", r.plural()),
            ));
        }
        obj["kind"] = json!(r.kind());
        obj["apiVersion"] = json!(r.api_version());
        if r == Resource::Secrets {
            let mut data: Map<String, Value> = obj["data"].as_object().cloned().unwrap_or_default();
            for (k, v) in &data {
                let ok = v.as_str().is_some_and(|s| B64.decode(s).is_ok());
                if !ok {
                    return Err(Failure::invalid(
                        r,
                        name,
                        format!("data[{k}]: Invalid value: not base64"),
                    ));
                }
                if !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                {
                    return Err(Failure::invalid(
                        r,
                        name,
                        format!("data[{k}]: Invalid value: a valid config key is required"),
                    ));
                }
            }
            if let Some(sd) = obj["stringData"].as_object().cloned() {
                for (k, v) in sd {
                    data.insert(k, json!(B64.encode(v.as_str().unwrap_or_default())));
                }
            }
            let total: usize = data
                .values()
                .map(|v| v.as_str().map_or(0, |s| s.len() * 3 / 4))
                .sum();
            if total > 1024 * 1024 {
                return Err(Failure::invalid(
                    r,
                    name,
                    "data: Too long: must have at most 1048576 bytes",
                ));
            }
            if let Some(o) = obj.as_object_mut() {
                o.remove("stringData");
            }
            obj["data"] = Value::Object(data);
            if obj["type"].is_null() {
                obj["type"] = json!("Opaque");
            }
            if let Some(cur) = current
                && cur["type"] != obj["type"]
            {
                return Err(Failure::invalid(
                    r,
                    name,
                    "type: Invalid value: field is immutable",
                ));
            }
        }
        Ok(())
    }

    fn commit(&mut self, key: Key, r: Resource, ns: &str, mut obj: Value) -> Value {
        self.revision += 1;
        obj["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        if r.namespaced() {
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        self.objects.insert(key, obj.clone());
        obj
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}
