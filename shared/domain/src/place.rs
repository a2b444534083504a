//! Where a cluster lives: meshca's own AWS account or a member account of the organisation, and
//! a region. Escrow, reports and events are keyed by it, so two clusters of one name in two
//! accounts never share a record.

use std::fmt;
use std::str::FromStr;

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

/// Text that is not a twelve-digit account id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an AWS account id (12 digits)")]
pub struct BadAccountId(pub String);

impl FromStr for AccountId {
    type Err = BadAccountId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(s.to_string()))
        } else {
            Err(BadAccountId(s.to_string()))
        }
    }
}

impl AccountId {
    /// The twelve digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose clusters: the account meshca runs in, or a member reached through a role there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// meshca's own account.
    Home,
    /// A member account, reached through a role assumed there.
    Member(AccountId),
}

impl Account {
    /// The member's id; `None` at home.
    pub fn member(&self) -> Option<&AccountId> {
        match self {
            Account::Home => None,
            Account::Member(id) => Some(id),
        }
    }
}

/// An account and one of its regions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// Whose account.
    pub account: Account,
    /// Which region.
    pub region: String,
}

impl Place {
    /// A region of meshca's own account.
    pub fn home(region: impl Into<String>) -> Self {
        Place {
            account: Account::Home,
            region: region.into(),
        }
    }

    /// A region of a member account.
    pub fn member(account: AccountId, region: impl Into<String>) -> Self {
        Place {
            account: Account::Member(account),
            region: region.into(),
        }
    }
}

/// `eu-west-1` at home, `222233334444/eu-west-1` in a member account.
impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.account {
            Account::Home => f.write_str(&self.region),
            Account::Member(id) => write!(f, "{id}/{}", self.region),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!("222233334444".parse::<AccountId>().is_ok());
        for bad in [
            "",
            "2222333344445",
            "22223333444",
            "22223333444a",
            "arn:aws:iam::222233334444:root",
        ] {
            assert_eq!(
                bad.parse::<AccountId>(),
                Err(BadAccountId(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn places_read_as_account_and_region() {
        assert_eq!(Place::home("eu-west-1").to_string(), "eu-west-1");
        assert_eq!(
            Place::member("222233334444".parse().unwrap(), "us-east-1").to_string(),
            "222233334444/us-east-1"
        );
        assert!(
            Place::home("z") < Place::member("222233334444".parse().unwrap(), "a"),
            "home first"
        );
    }
}
