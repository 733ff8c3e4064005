//! What the customer should fix for each probe error. The probe says *what* failed;
//! this says *where to look* in the customer's account, with their own role, bucket,
//! key and External ID filled in, so the answer can be acted on without a support call.

use super::store::Grant;
use serde_json::{json, Value};

/// `(title, fix)` for `code`.
fn text(code: &str, g: &Grant) -> (&'static str, String) {
    let ws = &g.workspace_id;
    let policies = format!("GET /v1/workspaces/{ws}/byo/grant/policies");
    let check = format!("POST /v1/workspaces/{ws}/byo/grant/check");
    match code {
        "BYO_ASSUME_ROLE_FAILED" => (
            "sealgate cannot assume the role",
            format!(
                "Make sure {role} exists and its trust policy lets sealgate's principal call sts:AssumeRole \
                 with the condition StringEquals sts:ExternalId = \"{ext}\" (this value changes when the \
                 External ID is rotated). The exact trust policy is in {policies}. If you revoked the role \
                 on purpose, disconnect the grant. Then {check}.",
                role = g.role_arn,
                ext = g.external_id
            ),
        ),
        "BYO_EXTERNAL_ID_NOT_ENFORCED" => (
            "the role accepts any External ID",
            format!(
                "The trust policy of {role} lets sealgate assume it with a wrong External ID, so another \
                 sealgate workspace naming this role could read your bucket. Add the Condition {cond} to the \
                 statement that trusts sealgate's principal (the exact trust policy is in {policies}). Then \
                 {check}.",
                role = g.role_arn,
                cond = super::probe::external_id_condition(&g.external_id)
            ),
        ),
        "BYO_BUCKET_NOT_FOUND" => (
            "the bucket does not exist",
            format!(
                "No bucket named {b} exists. Create it in {r}, or disconnect this grant and register one \
                 naming the right bucket. Then {check}.",
                b = g.bucket,
                r = g.region
            ),
        ),
        "BYO_ACCESS_DENIED" => (
            "the role may not read the bucket",
            format!(
                "Allow the role s3:ListBucket and s3:GetBucketLocation on arn:aws:s3:::{b} and s3:GetObject on \
                 arn:aws:s3:::{b}/* (the bucket policy and role policy in {policies}); check that no SCP, \
                 permission boundary or explicit Deny in the bucket policy blocks it. Then {check}.",
                b = g.bucket
            ),
        ),
        "BYO_REGION_MISMATCH" => (
            "the bucket is in another region",
            format!(
                "The grant says {r} but the bucket {b} lives elsewhere (see last_verify_message). Disconnect \
                 this grant and register it again with the bucket's real region.",
                r = g.region,
                b = g.bucket
            ),
        ),
        "BYO_KMS_ACCESS_DENIED" => (
            "the role cannot use the KMS key",
            format!(
                "Add the key-policy statement from {policies} to the key policy of {k} (kms:Decrypt through S3 \
                 and kms:DescribeKey for the role), make sure the key is enabled and in {r}. Then {check}.",
                k = g.kms_key_id.as_deref().unwrap_or("the key"),
                r = g.region
            ),
        ),
        "BYO_THROTTLED" => (
            "AWS throttled the calls",
            format!(
                "AWS kept throttling after several attempts with back-off. Nothing needs changing if it \
                 passes: {check} again in a minute. If it persists, something else in the account is using \
                 up the STS/S3/KMS request quotas."
            ),
        ),
        "BYO_PROBE_TIMEOUT" => (
            "a call into the account did not answer in time",
            format!(
                "A call to AWS did not answer within the time limit. Check for network policies, VPC \
                 endpoint policies or an AWS service event in {r}, then {check}.",
                r = g.region
            ),
        ),
        _ => (
            "AWS answered with an unexpected error",
            format!(
                "AWS answered with an error none of the other checks covers; last_verify_message has AWS's \
                 code and request id (look it up in CloudTrail). Then {check}."
            ),
        ),
    }
}

/// One checklist entry: `{code, title, fix}`.
pub fn entry(code: &str, g: &Grant) -> Value {
    let (title, fix) = text(code, g);
    json!({ "code": code, "title": title, "fix": fix })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code a probe or a call into the customer's account can end with.
    const CODES: &[&str] = &[
        "BYO_ASSUME_ROLE_FAILED",
        "BYO_EXTERNAL_ID_NOT_ENFORCED",
        "BYO_BUCKET_NOT_FOUND",
        "BYO_ACCESS_DENIED",
        "BYO_REGION_MISMATCH",
        "BYO_KMS_ACCESS_DENIED",
        "BYO_THROTTLED",
        "BYO_PROBE_TIMEOUT",
        "BYO_AWS_ERROR",
    ];

    #[test]
    fn every_code_has_a_specific_entry_naming_the_customer_resources() {
        let g = Grant {
            id: "byo_1".into(),
            workspace_id: "ws_1".into(),
            role_arn: "arn:aws:iam::123456789012:role/R".into(),
            bucket: "the-bucket".into(),
            region: "eu-west-1".into(),
            kms_key_id: Some("alias/k".into()),
            external_id: "0f0e-ext".into(),
            status: "failed".into(),
            last_verify_error: None,
            last_verify_message: None,
            last_checked_at: None,
            last_verified_at: None,
            created_at: 0,
            rotated_at: None,
            revoked_at: None,
        };
        let mut titles = std::collections::HashSet::new();
        for code in CODES {
            let e = entry(code, &g);
            assert_eq!(e["code"], *code);
            assert!(
                titles.insert(e["title"].as_str().unwrap_or_default().to_string()),
                "duplicate title for {code}"
            );
        }
        assert!(entry("BYO_ASSUME_ROLE_FAILED", &g)["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("0f0e-ext"));
        assert!(entry("BYO_EXTERNAL_ID_NOT_ENFORCED", &g)["fix"]
            .as_str()
            .unwrap_or_default()
            .contains(r#"{"StringEquals":{"sts:ExternalId":"0f0e-ext"}}"#));
        assert!(entry("BYO_ACCESS_DENIED", &g)["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("arn:aws:s3:::the-bucket/*"));
        assert!(entry("BYO_KMS_ACCESS_DENIED", &g)["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("alias/k"));
    }
}
