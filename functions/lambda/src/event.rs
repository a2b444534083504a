//! The events cluster-events accepts, parsed into one request type. Anything else is refused
//! with a message that says what was expected — never a panic, never the payload echoed.

use std::collections::BTreeMap;

use serde_json::Value;

pub const CLOUDTRAIL: &str = "AWS API Call via CloudTrail";
pub const RECONCILE_REQUESTED: &str = "meshca Reconcile Requested";
pub const SCHEDULED: &str = "Scheduled Event";

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A cluster was created; `tags` are those of the CreateCluster request.
    Created { cluster: String, region: String, tags: BTreeMap<String, String> },
    Deleted { cluster: String, region: String },
    /// Reconcile one cluster now (a reconcile request event or a direct invoke).
    Reconcile { cluster: String, region: Option<String>, force: bool },
    /// A CloudTrail record of a call that failed: nothing happened, nothing to do.
    FailedCall { event_name: String, error_code: String },
    /// The schedule (expiry-sweep).
    Sweep,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unsupported event: {0}")]
pub struct EventError(pub String);

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str().filter(|s| !s.is_empty())
}

/// Classifies an EventBridge event or a direct-invoke payload.
pub fn parse(event: &Value) -> Result<Request, EventError> {
    if !event.is_object() {
        return Err(EventError("the payload is not a JSON object".into()));
    }
    let detail_type = text(event, &["detail-type"]);
    let source = text(event, &["source"]);
    match (detail_type, source) {
        (Some(CLOUDTRAIL), Some("aws.eks")) => cloudtrail(event),
        (Some(CLOUDTRAIL), other) => Err(EventError(format!("CloudTrail event from {}, not aws.eks", other.unwrap_or("no source")))),
        (Some(RECONCILE_REQUESTED), _) => reconcile(&event["detail"], "detail."),
        (Some(SCHEDULED), _) => Ok(Request::Sweep),
        (Some(other), _) => Err(EventError(format!(
            "detail-type {other:?}; expected {CLOUDTRAIL:?} (aws.eks), {RECONCILE_REQUESTED:?} or {SCHEDULED:?}"
        ))),
        (None, _) if event.get("cluster").is_some() => reconcile(event, ""),
        (None, _) => Err(EventError(
            "neither an EventBridge event (no detail-type) nor a direct invoke ({\"cluster\": …, \"region\": …, \"force\": false})".into(),
        )),
    }
}

fn reconcile(v: &Value, at: &str) -> Result<Request, EventError> {
    let cluster = text(v, &["cluster"]).ok_or_else(|| EventError(format!("{at}cluster is missing or not a string")))?;
    let region = match v.get("region") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r.clone()),
        Some(_) => return Err(EventError(format!("{at}region is not a string"))),
    };
    let force = match v.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(EventError(format!("{at}force is not a boolean"))),
    };
    Ok(Request::Reconcile { cluster: cluster.to_string(), region, force })
}

fn cloudtrail(event: &Value) -> Result<Request, EventError> {
    let d = &event["detail"];
    let name = text(d, &["eventName"]).ok_or_else(|| EventError("detail.eventName is missing".into()))?;
    if let Some(code) = text(d, &["errorCode"]) {
        return Ok(Request::FailedCall { event_name: name.to_string(), error_code: code.to_string() });
    }
    let region = text(d, &["awsRegion"])
        .or_else(|| text(event, &["region"]))
        .ok_or_else(|| EventError("neither detail.awsRegion nor region is set".into()))?
        .to_string();
    let cluster = text(d, &["requestParameters", "name"])
        .or_else(|| text(d, &["requestParameters", "clusterName"]))
        .or_else(|| text(d, &["responseElements", "cluster", "name"]))
        .map(str::to_string)
        .or_else(|| text(d, &["responseElements", "cluster", "arn"]).and_then(|a| a.rsplit('/').next()).map(str::to_string))
        .ok_or_else(|| EventError(format!("{name}: no cluster name in requestParameters or responseElements")))?;
    match name {
        "CreateCluster" => {
            let tags = d["requestParameters"]["tags"]
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default();
            Ok(Request::Created { cluster, region, tags })
        }
        "DeleteCluster" => Ok(Request::Deleted { cluster, region }),
        other => Err(EventError(format!("eventName {other}; expected CreateCluster or DeleteCluster"))),
    }
}
