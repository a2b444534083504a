//! MESHCA_ACCOUNTS: the member accounts meshca reaches, each through a role of its own.

use meshca_core::AccountId;
use meshca_wiring::{Arn, MemberRole, MemberSpec};

use super::{ConfigError, get};

/// One entry of MESHCA_ACCOUNTS.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MemberEntry {
    account: String,
    role: Option<String>,
    external_id: Option<String>,
    regions: Option<Vec<String>>,
}

/// MESHCA_ACCOUNTS: a JSON list of member accounts,
/// `[{"account": "222233334444", "role": "arn:aws:iam::222233334444:role/meshca-member",
/// "externalId": "…", "regions": ["eu-west-1"]}]`; `role` defaults to
/// `arn:aws:iam::<account>:role/meshca-member`, `regions` to MESHCA_REGIONS. Each account once;
/// the role must be in its account (a role elsewhere would reach another account's clusters).
pub(super) fn members(
    env: &dyn Fn(&str) -> Option<String>,
    home_regions: &[String],
) -> Result<Vec<MemberSpec>, ConfigError> {
    const VAR: &str = "MESHCA_ACCOUNTS";
    let bad = |problem: String| ConfigError { var: VAR, problem };
    let Some(text) = get(env, VAR) else {
        return Ok(vec![]);
    };
    let entries: Vec<MemberEntry> = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "not a JSON list of {{account, role, externalId, regions}}: {e}"
        ))
    })?;
    let mut out: Vec<MemberSpec> = Vec::new();
    for e in entries {
        let account: AccountId = e
            .account
            .parse()
            .map_err(|e: meshca_core::place::BadAccountId| bad(e.to_string()))?;
        if out.iter().any(|m| m.account == account) {
            return Err(bad(format!("account {account} is listed twice")));
        }
        let role_arn = e
            .role
            .unwrap_or_else(|| format!("arn:aws:iam::{account}:role/meshca-member"));
        if role_account(&role_arn).as_deref() != Some(account.as_str()) {
            return Err(bad(format!(
                "account {account}: role {role_arn:?} is not an IAM role of that account"
            )));
        }
        let regions = e.regions.unwrap_or_else(|| home_regions.to_vec());
        if let Some(r) = regions.iter().find(|r| !is_region(r)) {
            return Err(bad(format!(
                "account {account}: {r:?} is not a region name"
            )));
        }
        if regions.is_empty() {
            return Err(bad(format!("account {account}: no region")));
        }
        out.push(MemberSpec {
            account,
            role: MemberRole {
                role_arn,
                external_id: e.external_id.filter(|x| !x.is_empty()),
            },
            regions,
        });
    }
    Ok(out)
}

/// The account of an IAM role ARN; `None` for anything else.
pub(super) fn role_account(text: &str) -> Option<String> {
    let arn: Arn = text.parse().ok()?;
    (arn.service == "iam" && arn.resource.starts_with("role/")).then_some(arn.account)
}

pub(super) fn is_region(r: &str) -> bool {
    !r.is_empty()
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// MESHCA_SECURITY_ACCOUNT: an account id that is not one of the members.
pub(super) fn security(
    env: &dyn Fn(&str) -> Option<String>,
    members: &[MemberSpec],
) -> Result<Option<AccountId>, ConfigError> {
    const VAR: &str = "MESHCA_SECURITY_ACCOUNT";
    let Some(text) = get(env, VAR) else {
        return Ok(None);
    };
    let id: AccountId = text
        .trim()
        .parse()
        .map_err(|e: meshca_core::place::BadAccountId| ConfigError {
            var: VAR,
            problem: e.to_string(),
        })?;
    if members.iter().any(|m| m.account == id) {
        return Err(ConfigError {
            var: VAR,
            problem: format!(
                "{id} is a member account in MESHCA_ACCOUNTS, and a member can never revoke"
            ),
        });
    }
    Ok(Some(id))
}
