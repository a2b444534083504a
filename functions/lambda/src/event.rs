//! The events cluster-events accepts, read into typed structs and classified into one request
//! type. Anything else is refused with a message that says what was expected — never a panic,
//! never the payload echoed.
//!
//! The structs are our own rather than `aws_lambda_events`' (whose EventBridge envelope requires
//! `source` and a timestamp, and has no CloudTrail detail for EKS): every field is optional
//! and `Loose`, so a field of the wrong type is reported by name instead of failing the whole
//! document, and the shapes CloudTrail really sends (`name` or `clusterName`, a name only in
//! `responseElements`, a failed call's `errorCode`) are all read.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

pub use meshca_wiring::RECONCILE_REQUESTED;
/// The detail-type of the CloudTrail events CreateCluster and DeleteCluster arrive as.
pub const CLOUDTRAIL: &str = "AWS API Call via CloudTrail";
/// The detail-type of the schedule's events.
pub const SCHEDULED: &str = "Scheduled Event";
/// A compromise response asked of the functions: revoke one cluster and hold it.
pub const REVOKE_REQUESTED: &str = "meshca Revoke Requested";

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A cluster was created; `tags` are those of the CreateCluster request; `account` is the
    /// event's, where the call was made (a member's rule forwards it to meshca's bus).
    Created {
        /// The new cluster.
        cluster: String,
        /// Its region.
        region: String,
        /// The tags of the CreateCluster request.
        tags: BTreeMap<String, String>,
        /// The account the call was made in.
        account: Option<String>,
    },
    /// A cluster was deleted: revoke what it was issued and retire its escrow.
    Deleted {
        /// The deleted cluster.
        cluster: String,
        /// Its region.
        region: String,
        /// The account the call was made in.
        account: Option<String>,
    },
    /// Reconcile one cluster now (a reconcile request event or a direct invoke): `account` is the
    /// cluster's (`None`: meshca's own), `sender` the account the event came from (`None` for a
    /// direct invoke), which must be meshca's own.
    Reconcile {
        /// The cluster.
        cluster: String,
        /// Its region (`None`: the function's own).
        region: Option<String>,
        /// Renew even if the bundle is not due.
        force: bool,
        /// The cluster's account.
        account: Option<String>,
        /// The account the event came from.
        sender: Option<String>,
    },
    /// A CloudTrail record of a call that failed: nothing happened, nothing to do.
    FailedCall {
        /// The call (`CreateCluster`, `DeleteCluster`).
        event_name: String,
        /// Why it failed.
        error_code: String,
    },
    /// The schedule (expiry-sweep).
    Sweep,
    /// Revoke every certificate of one cluster and hold it (`account`: the cluster's, `None`
    /// meshca's own; `sender`: where the event came from, meshca's own account or the security
    /// account).
    Revoke {
        /// The cluster.
        cluster: String,
        /// Its region (`None`: the function's own).
        region: Option<String>,
        /// The cluster's account.
        account: Option<String>,
        /// Why, as the authorities record it.
        reason: meshca_core::authority::RevocationReason,
        /// The account the event came from.
        sender: Option<String>,
    },
}

/// An event this function does not take, or takes only well-formed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unsupported event: {0}")]
pub struct EventError(pub String);

/// A field as found: of the expected type, or of another one (kept apart so the message can
/// name the field). Absent and `null` are `None` around it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Loose<T> {
    Is(T),
    Other(serde::de::IgnoredAny),
}

type Field<T> = Option<Loose<T>>;

/// The value when it is of the expected type.
fn typed<T>(field: Field<T>) -> Option<T> {
    match field {
        Some(Loose::Is(v)) => Some(v),
        _ => None,
    }
}

/// A non-empty string, as every name and code here must be.
fn text(field: Field<String>) -> Option<String> {
    typed(field).filter(|s| !s.is_empty())
}

/// The EventBridge envelope, or a direct invoke's `{cluster, region, force}` at the top level.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: Field<String>,
    source: Field<String>,
    region: Field<String>,
    account: Field<String>,
    #[serde(default)]
    detail: Value,
    /// Any `cluster` key: a direct invoke.
    #[serde(default, deserialize_with = "present", rename = "cluster")]
    has_cluster: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A reconcile request: `detail` of the event, or the whole direct-invoke payload.
#[derive(Debug, Default, Deserialize)]
struct ReconcileDetail {
    cluster: Field<String>,
    region: Field<String>,
    account: Field<String>,
    force: Field<bool>,
}

/// A revoke request's detail.
#[derive(Debug, Default, Deserialize)]
struct RevokeDetail {
    cluster: Field<String>,
    region: Field<String>,
    account: Field<String>,
    reason: Field<String>,
}

/// The CloudTrail record of an EKS API call.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiCall {
    event_name: Field<String>,
    error_code: Field<String>,
    aws_region: Field<String>,
    request_parameters: Field<ClusterParameters>,
    response_elements: Field<ResponseElements>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterParameters {
    name: Field<String>,
    cluster_name: Field<String>,
    tags: Field<BTreeMap<String, Loose<String>>>,
}

#[derive(Debug, Default, Deserialize)]
struct ResponseElements {
    cluster: Field<ClusterElement>,
}

#[derive(Debug, Default, Deserialize)]
struct ClusterElement {
    name: Field<String>,
    arn: Field<String>,
}

/// Reads `detail` as `T`; a detail that is not an object reads as empty.
fn detail<T: for<'de> Deserialize<'de> + Default>(detail: Value) -> T {
    serde_json::from_value(detail).unwrap_or_default()
}

/// Classifies an EventBridge event or a direct-invoke payload.
pub fn parse(event: &Value) -> Result<Request, EventError> {
    if !event.is_object() {
        return Err(EventError("the payload is not a JSON object".into()));
    }
    let envelope = Envelope::deserialize(event)
        .map_err(|e| EventError(format!("unreadable envelope: {e}")))?;
    let region = text(envelope.region);
    let sender = text(envelope.account);
    match (text(envelope.detail_type).as_deref(), text(envelope.source).as_deref()) {
        (Some(CLOUDTRAIL), Some("aws.eks")) => cloudtrail(detail(envelope.detail), region, sender),
        (Some(CLOUDTRAIL), other) => Err(EventError(format!("CloudTrail event from {}, not aws.eks", other.unwrap_or("no source")))),
        (Some(RECONCILE_REQUESTED), _) => reconcile(detail(envelope.detail), "detail.", sender),
        (Some(REVOKE_REQUESTED), _) => revoke(detail(envelope.detail), sender),
        (Some(SCHEDULED), _) => Ok(Request::Sweep),
        (Some(other), _) => Err(EventError(format!(
            "detail-type {other:?}; expected {CLOUDTRAIL:?} (aws.eks), {RECONCILE_REQUESTED:?}, {REVOKE_REQUESTED:?} or {SCHEDULED:?}"
        ))),
        (None, _) if envelope.has_cluster => reconcile(ReconcileDetail::deserialize(event).unwrap_or_default(), "", None),
        (None, _) => Err(EventError(
            "neither an EventBridge event (no detail-type) nor a direct invoke ({\"cluster\": …, \"region\": …, \"force\": false})".into(),
        )),
    }
}

fn revoke(d: RevokeDetail, sender: Option<String>) -> Result<Request, EventError> {
    let field = |f: Field<String>, name: &str| match f {
        None => Ok(None),
        Some(Loose::Is(v)) if !v.is_empty() => Ok(Some(v)),
        Some(_) => Err(EventError(format!(
            "detail.{name} is not a non-empty string"
        ))),
    };
    let cluster = field(d.cluster, "cluster")?
        .ok_or_else(|| EventError("detail.cluster is missing".into()))?;
    let reason = field(d.reason, "reason")?
        .ok_or_else(|| EventError("detail.reason is missing (key-compromise, …)".into()))?
        .parse()
        .map_err(|e: String| EventError(format!("detail.reason {e}")))?;
    Ok(Request::Revoke {
        cluster,
        region: field(d.region, "region")?,
        account: field(d.account, "account")?,
        reason,
        sender,
    })
}

fn reconcile(d: ReconcileDetail, at: &str, sender: Option<String>) -> Result<Request, EventError> {
    let cluster = text(d.cluster)
        .ok_or_else(|| EventError(format!("{at}cluster is missing or not a string")))?;
    let optional = |field: Field<String>, name: &str| match field {
        None => Ok(None),
        Some(Loose::Is(r)) => Ok(Some(r)),
        Some(Loose::Other(_)) => Err(EventError(format!("{at}{name} is not a string"))),
    };
    let region = optional(d.region, "region")?;
    let account = optional(d.account, "account")?;
    let force = match d.force {
        None => false,
        Some(Loose::Is(b)) => b,
        Some(Loose::Other(_)) => return Err(EventError(format!("{at}force is not a boolean"))),
    };
    Ok(Request::Reconcile {
        cluster,
        region,
        force,
        account,
        sender,
    })
}

fn cloudtrail(
    call: ApiCall,
    envelope_region: Option<String>,
    account: Option<String>,
) -> Result<Request, EventError> {
    let name =
        text(call.event_name).ok_or_else(|| EventError("detail.eventName is missing".into()))?;
    if let Some(code) = text(call.error_code) {
        return Ok(Request::FailedCall {
            event_name: name,
            error_code: code,
        });
    }
    let region = text(call.aws_region)
        .or(envelope_region)
        .ok_or_else(|| EventError("neither detail.awsRegion nor region is set".into()))?;
    let request = typed(call.request_parameters).unwrap_or_default();
    let response = typed(call.response_elements)
        .and_then(|r| typed(r.cluster))
        .unwrap_or_default();
    let cluster = text(request.name)
        .or(text(request.cluster_name))
        .or(text(response.name))
        .or_else(|| text(response.arn).and_then(|a| a.rsplit('/').next().map(str::to_string)))
        .ok_or_else(|| {
            EventError(format!(
                "{name}: no cluster name in requestParameters or responseElements"
            ))
        })?;
    match name.as_str() {
        "CreateCluster" => {
            let tags = typed(request.tags)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| Some((k, typed(Some(v))?)))
                .collect();
            Ok(Request::Created {
                cluster,
                region,
                tags,
                account,
            })
        }
        "DeleteCluster" => Ok(Request::Deleted {
            cluster,
            region,
            account,
        }),
        other => Err(EventError(format!(
            "eventName {other}; expected CreateCluster or DeleteCluster"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_of_the_wrong_type_are_named_or_passed_over() {
        // A non-string name falls back to the next place a name can be, as before.
        let e = json!({"detail-type": CLOUDTRAIL, "source": "aws.eks", "detail": {
            "eventName": "DeleteCluster", "awsRegion": "eu-west-1",
            "requestParameters": {"name": 7, "clusterName": "c2"}}});
        assert_eq!(
            parse(&e),
            Ok(Request::Deleted {
                cluster: "c2".into(),
                region: "eu-west-1".into(),
                account: None
            })
        );
        // The ARN's last segment when nothing else names the cluster; the envelope's region.
        let e = json!({"detail-type": CLOUDTRAIL, "source": "aws.eks", "region": "us-east-1", "detail": {
            "eventName": "DeleteCluster", "responseElements": {"cluster": {"arn": "arn:aws:eks:us-east-1:1:cluster/c3"}}}});
        assert_eq!(
            parse(&e),
            Ok(Request::Deleted {
                cluster: "c3".into(),
                region: "us-east-1".into(),
                account: None
            })
        );
        // Non-string tag values are dropped, string ones kept.
        let e = json!({"detail-type": CLOUDTRAIL, "source": "aws.eks", "detail": {
            "eventName": "CreateCluster", "awsRegion": "eu-west-1",
            "requestParameters": {"name": "c1", "tags": {"a": "b", "n": 1}}}});
        let Ok(Request::Created { tags, .. }) = parse(&e) else {
            panic!()
        };
        assert_eq!(tags, BTreeMap::from([("a".to_string(), "b".to_string())]));
        // A detail that is not an object, and typed fields of the wrong type.
        let e = json!({"detail-type": CLOUDTRAIL, "source": "aws.eks", "detail": "CreateCluster"});
        assert_eq!(
            parse(&e),
            Err(EventError("detail.eventName is missing".into()))
        );
        assert_eq!(
            parse(&json!({"cluster": "c1", "region": 5})),
            Err(EventError("region is not a string".into()))
        );
        assert_eq!(
            parse(
                &json!({"detail-type": RECONCILE_REQUESTED, "detail": {"cluster": "c1", "force": null}})
            ),
            Ok(Request::Reconcile {
                cluster: "c1".into(),
                region: None,
                force: false,
                account: None,
                sender: None
            })
        );
        assert_eq!(
            parse(&json!({"cluster": null})),
            Err(EventError("cluster is missing or not a string".into()))
        );
        assert_eq!(
            parse(&json!({"cluster": "c1", "account": 222233334444u64})),
            Err(EventError("account is not a string".into()))
        );
    }

    #[test]
    fn a_revoke_request_names_its_cluster_and_one_of_the_reasons() {
        let e = json!({"detail-type": REVOKE_REQUESTED, "source": "security", "account": "123456789012",
            "detail": {"cluster": "c1", "region": "eu-west-1", "reason": "key-compromise"}});
        assert_eq!(
            parse(&e),
            Ok(Request::Revoke {
                cluster: "c1".into(),
                region: Some("eu-west-1".into()),
                account: None,
                reason: meshca_core::authority::RevocationReason::KeyCompromise,
                sender: Some("123456789012".into()),
            })
        );
        let refused = |detail: Value| {
            parse(&json!({"detail-type": REVOKE_REQUESTED, "detail": detail}))
                .unwrap_err()
                .0
        };
        assert!(refused(json!({"cluster": "c1"})).contains("detail.reason is missing"));
        let why = refused(json!({"cluster": "c1", "reason": "stolen"}));
        assert!(
            why.contains("one of: key-compromise, ca-compromise"),
            "{why}"
        );
        assert!(refused(json!({"reason": "superseded"})).contains("detail.cluster is missing"));
        assert!(
            refused(json!({"cluster": 7, "reason": "superseded"}))
                .contains("detail.cluster is not")
        );
    }

    #[test]
    fn the_account_of_an_event_is_where_it_came_from_and_a_reconcile_names_its_target() {
        let e = json!({"detail-type": CLOUDTRAIL, "source": "aws.eks", "account": "222233334444", "detail": {
            "eventName": "DeleteCluster", "awsRegion": "eu-west-1", "requestParameters": {"name": "c1"}}});
        assert_eq!(
            parse(&e),
            Ok(Request::Deleted {
                cluster: "c1".into(),
                region: "eu-west-1".into(),
                account: Some("222233334444".into())
            })
        );
        let e = json!({"detail-type": RECONCILE_REQUESTED, "source": "meshca", "account": "123456789012",
            "detail": {"cluster": "c1", "region": "eu-west-1", "account": "222233334444"}});
        assert_eq!(
            parse(&e),
            Ok(Request::Reconcile {
                cluster: "c1".into(),
                region: Some("eu-west-1".into()),
                force: false,
                account: Some("222233334444".into()),
                sender: Some("123456789012".into())
            })
        );
        let direct = parse(&json!({"cluster": "c1", "account": "222233334444"}));
        assert!(
            matches!(
                direct,
                Ok(Request::Reconcile {
                    account: Some(_),
                    sender: None,
                    ..
                })
            ),
            "{direct:?}"
        );
    }
}
