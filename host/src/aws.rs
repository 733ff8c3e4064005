//! AWS clients, configured only from the SDK's standard settings.
//!
//! Nothing here reads a sealgate-specific variable for endpoints, regions or
//! credentials: `AWS_REGION`, `AWS_ENDPOINT_URL` and the per-service variants
//! (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL_S3`, …), profiles, the default credential
//! chain (environment, web identity, IMDS) all work as they do for any SDK program, so
//! the host is pointed at an emulator without code changes.
//!
//! The shared configuration is loaded lazily, on the first AWS call: a host that never
//! talks to AWS never probes IMDS for a region at start-up.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::OnceCell;

pub mod host_error;
pub use host_error::HostAwsError;

#[derive(Default)]
pub struct Aws {
    base: OnceCell<SdkConfig>,
}

impl Aws {
    /// The SDK configuration from the environment (loaded once).
    pub async fn config(&self) -> &SdkConfig {
        self.base
            .get_or_init(|| aws_config::defaults(BehaviorVersion::latest()).load())
            .await
    }

    /// The endpoint every service is pointed at (`AWS_ENDPOINT_URL`), for messages.
    pub async fn endpoint_url(&self) -> Option<String> {
        self.config().await.endpoint_url().map(str::to_string)
    }

    /// STS in `region` (an account's STS region is part of its ceiling).
    pub async fn sts(&self, region: &str) -> aws_sdk_sts::Client {
        let conf = aws_sdk_sts::config::Builder::from(self.config().await)
            .region(Region::new(region.to_string()))
            .build();
        aws_sdk_sts::Client::from_conf(conf)
    }

    /// S3 in `region` acting with `creds` (for example an assumed role's session).
    ///
    /// Path-style addressing is used when an endpoint override is configured: custom
    /// endpoints (emulators, VPC endpoints by IP) rarely serve virtual-hosted buckets.
    pub async fn s3_as(&self, creds: aws_sdk_s3::config::Credentials, region: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(self.config().await)
            .region(Region::new(region.to_string()))
            .credentials_provider(creds)
            .force_path_style(endpoint_overridden("S3"))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// KMS in `region` acting with `creds`.
    pub async fn kms_as(&self, creds: aws_sdk_kms::config::Credentials, region: &str) -> aws_sdk_kms::Client {
        let conf = aws_sdk_kms::config::Builder::from(self.config().await)
            .region(Region::new(region.to_string()))
            .credentials_provider(creds)
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    }
}

/// Whether `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_<SERVICE>` is set.
fn endpoint_overridden(service: &str) -> bool {
    std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os(format!("AWS_ENDPOINT_URL_{service}")).is_some()
}

/// Turns an STS credentials structure into one the other clients accept.
pub fn session_credentials(
    c: &aws_sdk_sts::types::Credentials,
    provider: &'static str,
) -> aws_sdk_s3::config::Credentials {
    let expiry = std::time::SystemTime::try_from(c.expiration).ok();
    aws_sdk_s3::config::Credentials::new(
        c.access_key_id.clone(),
        c.secret_access_key.clone(),
        Some(c.session_token.clone()),
        expiry,
        provider,
    )
}
