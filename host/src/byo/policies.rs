//! The IAM documents a customer applies so sealgate can read their bucket, built from
//! the grant: the role's trust policy (sealgate's principal, pinned to the External
//! ID), the bucket policy and the role's own permissions (read-only, this bucket only),
//! and the statement to add to the KMS key policy.
//!
//! Beyond "GetObject + ListBucket", both S3 documents also allow `s3:GetBucketLocation`
//! on the bucket: the readiness probe calls it to confirm the region, and without it a
//! correctly configured customer would fail the probe with `BYO_ACCESS_DENIED`.
//! The KMS statement allows `kms:Decrypt` only through S3 in the grant's region
//! (`kms:ViaService`), which is all reading SSE-KMS objects needs, and `kms:DescribeKey`
//! directly, which the probe uses to check the key without touching any data. No
//! `GenerateDataKey`: sealgate never writes to the bucket.

use super::error::{ByoError, ByoResult};
use super::regions;
use super::store::Grant;
use crate::aws::{host_error, HostAwsError};
use crate::App;
use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

/// IAM's policy language version.
const VERSION: &str = "2012-10-17";

fn partition_of(g: &Grant) -> &'static str {
    regions::partition(&g.region).unwrap_or("aws")
}

pub fn trust_policy(principal: &str, external_id: &str) -> Value {
    json!({
        "Version": VERSION,
        "Statement": [{
            "Sid": "SealgateAssumeRoleWithExternalId",
            "Effect": "Allow",
            "Principal": { "AWS": principal },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": external_id } }
        }]
    })
}

fn s3_statements(g: &Grant, principal: Option<&str>) -> Value {
    let p = partition_of(g);
    let bucket_arn = format!("arn:{p}:s3:::{}", g.bucket);
    let mut list = json!({
        "Sid": "SealgateListBucket",
        "Effect": "Allow",
        "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
        "Resource": bucket_arn,
    });
    let mut read = json!({
        "Sid": "SealgateReadObjects",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": format!("{bucket_arn}/*"),
    });
    if let Some(principal) = principal {
        list["Principal"] = json!({ "AWS": principal });
        read["Principal"] = json!({ "AWS": principal });
    }
    json!([list, read])
}

/// The bucket policy: the customer's role may list and read this bucket, nothing else.
pub fn bucket_policy(g: &Grant) -> Value {
    json!({ "Version": VERSION, "Statement": s3_statements(g, Some(&g.role_arn)) })
}

/// The statement to add to the KMS key's policy (`Resource: "*"` means "this key"
/// inside a key policy).
pub fn kms_statement(g: &Grant) -> Option<Value> {
    g.kms_key_id.as_ref()?;
    let via = format!("s3.{}.{}", g.region, regions::dns_suffix(partition_of(g)));
    Some(json!([
        {
            "Sid": "SealgateDecryptThroughS3",
            "Effect": "Allow",
            "Principal": { "AWS": g.role_arn },
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": { "StringEquals": { "kms:ViaService": via } }
        },
        {
            "Sid": "SealgateDescribeKey",
            "Effect": "Allow",
            "Principal": { "AWS": g.role_arn },
            "Action": "kms:DescribeKey",
            "Resource": "*"
        }
    ]))
}

/// The role's own permissions policy (what the CloudFormation template attaches).
pub fn role_policy(g: &Grant) -> Value {
    let mut statements = s3_statements(g, None).as_array().cloned().unwrap_or_default();
    if let Some(key) = &g.kms_key_id {
        let p = partition_of(g);
        let resource = if key.starts_with("arn:") {
            key.clone()
        } else {
            // Aliases and bare ids are resolved by KMS; an identity policy needs an ARN
            // pattern, so scope to the account's keys in the region (the key policy
            // statement is the precise control).
            format!("arn:{p}:kms:{}:*:key/*", g.region)
        };
        statements.push(json!({
            "Sid": "SealgateUseKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:DescribeKey"],
            "Resource": resource,
        }));
    }
    json!({ "Version": VERSION, "Statement": statements })
}

/// Turns a `GetCallerIdentity` ARN into one a trust policy can name: an assumed-role
/// session becomes its role (IAM paths are not in session ARNs; set
/// `SEALGATE_BYO_PRINCIPAL_ARN` when the host's role has one).
pub fn principal_from_caller(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = parts[..] {
        if let Some(rest) = resource.strip_prefix("assumed-role/") {
            let role = rest.split('/').next().unwrap_or(rest);
            return format!("arn:{partition}:iam::{account}:role/{role}");
        }
        if resource.starts_with("user/") {
            return format!("arn:{partition}:iam::{account}:{resource}");
        }
    }
    arn.to_string()
}

/// sealgate's own AWS principal: configured, or asked from STS once.
pub async fn principal(app: &App) -> ByoResult<String> {
    if let Some(p) = &super::config::settings().principal_arn {
        return Ok(p.clone());
    }
    static CALLER: OnceCell<String> = OnceCell::const_new();
    let endpoint = app.aws.endpoint_url().await;
    let unknown = |why: String| {
        ByoError::coded(
            StatusCode::SERVICE_UNAVAILABLE,
            "BYO_PRINCIPAL_UNKNOWN",
            format!(
                "cannot tell which AWS principal sealgate runs as ({why}); the operator can set \
                 SEALGATE_BYO_PRINCIPAL_ARN"
            ),
        )
    };
    // A failure is not cached: the next call asks again.
    let arn = CALLER
        .get_or_try_init(|| async {
            let sts = app
                .aws
                .sts(
                    &app.aws
                        .config()
                        .await
                        .region()
                        .map_or("us-east-1".to_string(), |r| r.to_string()),
                )
                .await;
            let out = tokio::time::timeout(super::config::settings().call_timeout, sts.get_caller_identity().send())
                .await
                .map_err(|_| unknown("STS GetCallerIdentity timed out".into()))?
                .map_err(|e| match HostAwsError::of(&e) {
                    Some(h) => {
                        tracing::warn!(code = h.code(), "GetCallerIdentity: {}", host_error::describe(&e));
                        ByoError::Api(h.to_api("STS", endpoint.as_deref()))
                    }
                    None => unknown(format!("STS GetCallerIdentity failed: {}", host_error::describe(&e))),
                })?;
            out.arn()
                .map(principal_from_caller)
                .ok_or_else(|| unknown("STS GetCallerIdentity returned no ARN".into()))
        })
        .await?;
    Ok(arn.clone())
}

/// Everything `GET …/byo/grant/policies` answers.
pub fn documents(g: &Grant, principal: &str) -> Value {
    json!({
        "grant_id": g.id,
        "external_id": g.external_id,
        "sealgate_principal": principal,
        "trust_policy": trust_policy(principal, &g.external_id),
        "bucket_policy": bucket_policy(g),
        "role_policy": role_policy(g),
        "kms_key_policy_statement": kms_statement(g),
        "cloudformation": {
            "template": "deploy/cloudformation/byo-customer-role.yaml",
            "parameters": {
                "SealgatePrincipalArn": principal,
                "ExternalId": g.external_id,
                "BucketName": g.bucket,
                "KmsKeyArn": g.kms_key_id.clone().unwrap_or_default(),
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(kms: Option<&str>) -> Grant {
        Grant {
            id: "byo_1".into(),
            workspace_id: "ws_1".into(),
            role_arn: "arn:aws:iam::123456789012:role/R".into(),
            bucket: "data-bucket".into(),
            region: "eu-west-1".into(),
            kms_key_id: kms.map(str::to_string),
            external_id: "ext-1".into(),
            status: "pending".into(),
            last_verify_error: None,
            last_verify_message: None,
            last_checked_at: None,
            last_verified_at: None,
            created_at: 0,
            rotated_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn trust_policy_pins_the_external_id() {
        let t = trust_policy("arn:aws:iam::111111111111:role/sealgate", "ext-1");
        let s = &t["Statement"][0];
        assert_eq!(s["Principal"]["AWS"], "arn:aws:iam::111111111111:role/sealgate");
        assert_eq!(s["Action"], "sts:AssumeRole");
        assert_eq!(s["Condition"]["StringEquals"]["sts:ExternalId"], "ext-1");
    }

    #[test]
    fn bucket_policy_names_only_that_bucket() {
        let p = bucket_policy(&grant(None));
        let text = p.to_string();
        let resources: Vec<&str> = p["Statement"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["Resource"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(resources, ["arn:aws:s3:::data-bucket", "arn:aws:s3:::data-bucket/*"]);
        assert!(!text.contains("PutObject") && !text.contains("DeleteObject"));
    }

    #[test]
    fn kms_statement_only_with_a_key() {
        assert!(kms_statement(&grant(None)).is_none());
        let s = kms_statement(&grant(Some("alias/k"))).unwrap_or_default();
        assert_eq!(
            s[0]["Condition"]["StringEquals"]["kms:ViaService"],
            "s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(s[0]["Action"], "kms:Decrypt");
    }

    #[test]
    fn caller_arns_become_principals() {
        assert_eq!(
            principal_from_caller("arn:aws:sts::123456789012:assumed-role/broker/i-0abc"),
            "arn:aws:iam::123456789012:role/broker"
        );
        assert_eq!(
            principal_from_caller("arn:aws:iam::123456789012:user/moto"),
            "arn:aws:iam::123456789012:user/moto"
        );
        assert_eq!(
            principal_from_caller("arn:aws:sts::123456789012:user/moto"),
            "arn:aws:iam::123456789012:user/moto"
        );
    }
}
