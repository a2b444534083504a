//! Member accounts of an organisation: their EKS clusters are listed, described and written to
//! with a role meshca assumes there, so the cluster's access entry names that role and meshca
//! needs no standing credentials in the member. Escrow and the CA stay in the home account.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};

use crate::error_parts;

/// Assumed credentials are renewed this long before they expire: an EKS token signed with them
/// must outlive its own 15 minutes, and a reconcile must not straddle the expiry.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(20 * 60);

/// The role meshca assumes in a member account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole {
    /// `arn:aws:iam::<member>:role/<name>`.
    pub role_arn: String,
    /// Required by the role's trust policy when the member set one.
    pub external_id: Option<String>,
}

/// `home` acting as `role`: STS AssumeRole with home's credentials, the result held until
/// [`REFRESH_BEFORE`] its expiry, so a sweep of many clusters costs one AssumeRole per member.
pub async fn member_config(home: &SdkConfig, role: &MemberRole) -> SdkConfig {
    let mut builder = AssumeRoleProvider::builder(&role.role_arn)
        .session_name("meshca")
        .configure(home);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id);
    }
    let assumed = HeldCredentials::new(builder.build().await);
    home.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(assumed))
        .build()
}

/// The account of `home`'s own credentials (STS GetCallerIdentity): how an event from meshca's
/// own account is told from a member's.
pub async fn caller_account(home: &SdkConfig) -> Result<String, String> {
    let sts = aws_sdk_sts::Client::new(home);
    let out = sts.get_caller_identity().send().await.map_err(|e| {
        let (code, message) = error_parts(&e);
        format!("STS GetCallerIdentity: {code}: {message}")
    })?;
    out.account
        .ok_or_else(|| "STS GetCallerIdentity named no account".into())
}

/// Credentials from `inner`, fetched once and reused until shortly before they expire; callers
/// waiting on one refresh share its answer.
#[derive(Debug)]
pub struct HeldCredentials<P> {
    inner: P,
    held: tokio::sync::Mutex<Option<Credentials>>,
}

impl<P: ProvideCredentials> HeldCredentials<P> {
    /// Holds what `inner` provides until shortly before it expires.
    pub fn new(inner: P) -> Self {
        HeldCredentials {
            inner,
            held: tokio::sync::Mutex::new(None),
        }
    }

    async fn get(&self) -> provider::Result {
        let mut held = self.held.lock().await;
        let fresh_until = SystemTime::now() + REFRESH_BEFORE;
        if let Some(c) = held
            .as_ref()
            .filter(|c| c.expiry().is_none_or(|e| e > fresh_until))
        {
            return Ok(c.clone());
        }
        let fetched = self.inner.provide_credentials().await?;
        *held = Some(fetched.clone());
        Ok(fetched)
    }
}

impl<P: ProvideCredentials> ProvideCredentials for HeldCredentials<P> {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: AtomicUsize,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let expiry = SystemTime::now() + self.lifetime;
            provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("ASIA{n}"),
                "s",
                Some("t".into()),
                Some(expiry),
                "test",
            )))
        }
    }

    #[tokio::test]
    async fn assumed_credentials_are_reused_until_shortly_before_they_expire() {
        let hour = HeldCredentials::new(Counting {
            calls: AtomicUsize::new(0),
            lifetime: Duration::from_secs(3600),
        });
        for _ in 0..5 {
            assert_eq!(
                hour.provide_credentials().await.unwrap().access_key_id(),
                "ASIA0"
            );
        }
        assert_eq!(hour.inner.calls.load(Ordering::SeqCst), 1);
        // Credentials closer to their end than REFRESH_BEFORE are fetched again every time.
        let short = HeldCredentials::new(Counting {
            calls: AtomicUsize::new(0),
            lifetime: REFRESH_BEFORE - Duration::from_secs(1),
        });
        short.provide_credentials().await.unwrap();
        assert_eq!(
            short.provide_credentials().await.unwrap().access_key_id(),
            "ASIA1"
        );
    }
}
