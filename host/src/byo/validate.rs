//! Input rules for BYO requests, written out from AWS's own documentation so a bad
//! value is refused at registration with the field named, instead of turning into a
//! confusing AWS error during the probe. Each checker returns the reason in words; the
//! handlers attach the typed code and the field name.

use super::regions;

/// A parsed IAM role ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    pub partition: String,
    pub account: String,
    /// `/` or `/a/b/`.
    pub path: String,
    pub name: String,
}

const PARTITIONS: &[&str] = &["aws", "aws-us-gov", "aws-cn"];

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:<partition>:iam::<12 digits>:role/<path/><name>` with IAM's rules: a name of
/// 1–64 characters from `[A-Za-z0-9+=,.@_-]`, a path of printable ASCII up to 512.
pub fn role_arn(s: &str) -> Result<RoleArn, String> {
    let expected = "expected arn:aws:iam::<12-digit account>:role/<name>";
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts[..] else {
        return Err(format!("not an ARN: {expected}"));
    };
    if arn != "arn" || service != "iam" {
        return Err(format!("not an IAM ARN: {expected}"));
    }
    if !PARTITIONS.contains(&partition) {
        return Err(format!("unknown partition {partition:?} (aws, aws-us-gov or aws-cn)"));
    }
    if !region.is_empty() {
        return Err(format!("IAM ARNs have an empty region field: {expected}"));
    }
    if !is_account(account) {
        return Err("the account must be exactly 12 digits".into());
    }
    let Some(rest) = resource.strip_prefix("role/") else {
        return Err(format!("not a role ARN: {expected}"));
    };
    let (path, name) = match rest.rsplit_once('/') {
        Some((p, n)) => (format!("/{p}/"), n),
        None => ("/".to_string(), rest),
    };
    if name.is_empty() || name.len() > 64 {
        return Err("the role name must be 1-64 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    {
        return Err("the role name may contain only letters, digits and + = , . @ _ -".into());
    }
    if path.len() > 512 || !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("the role path must be at most 512 printable ASCII characters without spaces".into());
    }
    Ok(RoleArn {
        partition: partition.to_string(),
        account: account.to_string(),
        path,
        name: name.to_string(),
    })
}

const BUCKET_PREFIXES: &[&str] = &["xn--", "sthree-", "amzn-s3-demo-"];
const BUCKET_SUFFIXES: &[&str] = &["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

/// S3's general-purpose bucket naming rules.
pub fn bucket(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err("a bucket name must be 3-63 characters long".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("a bucket name may contain only lowercase letters, digits, dots and hyphens".into());
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return Err("a bucket name must begin and end with a letter or digit".into());
    }
    if name.contains("..") {
        return Err("a bucket name must not contain two adjacent dots".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() == 4
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("a bucket name must not be formatted as an IP address".into());
    }
    if let Some(p) = BUCKET_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Err(format!("a bucket name must not start with the reserved prefix {p}"));
    }
    if let Some(s) = BUCKET_SUFFIXES.iter().find(|s| name.ends_with(**s)) {
        return Err(format!("a bucket name must not end with the reserved suffix {s}"));
    }
    Ok(())
}

/// A known region; answers its partition.
pub fn region(r: &str) -> Result<&'static str, String> {
    regions::partition(r).ok_or_else(|| {
        format!("unknown AWS region {r:?}: use a region code such as us-east-1, eu-west-1, us-gov-west-1 or cn-north-1")
    })
}

pub const MAX_KMS_KEY_ID: usize = 2048;

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_key_id(s: &str) -> bool {
    is_uuid(s)
        || s.strip_prefix("mrk-")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_alias(s: &str) -> bool {
    s.strip_prefix("alias/").is_some_and(|n| {
        !n.is_empty() && s.len() <= 256 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    })
}

/// A KMS key id, key ARN, alias name or alias ARN, at most 2048 characters. ARNs must
/// be in the grant's partition and region: SSE-KMS keys live in the bucket's region.
pub fn kms_key_id(s: &str, partition: Option<&str>, region: Option<&str>) -> Result<(), String> {
    let shapes =
        "expected a key id (1234abcd-12ab-34cd-56ef-1234567890ab or mrk-…), a key ARN, alias/<name> or an alias ARN";
    if s.is_empty() || s.len() > MAX_KMS_KEY_ID {
        return Err(format!("a KMS key id must be 1-{MAX_KMS_KEY_ID} characters"));
    }
    if is_key_id(s) || is_alias(s) {
        return Ok(());
    }
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, p, service, r, account, resource] = parts[..] else {
        return Err(shapes.into());
    };
    let resource_ok = resource.strip_prefix("key/").is_some_and(is_key_id) || is_alias(resource);
    if arn != "arn" || service != "kms" || !PARTITIONS.contains(&p) || !is_account(account) || !resource_ok {
        return Err(shapes.into());
    }
    if regions::partition(r).is_none() {
        return Err(format!("the key ARN names an unknown region {r:?}"));
    }
    if let Some(want) = partition.filter(|w| *w != p) {
        return Err(format!(
            "the key ARN is in partition {p}, the grant's region is in {want}"
        ));
    }
    if let Some(want) = region.filter(|w| *w != r) {
        return Err(format!(
            "the key is in {r} but the bucket's region is {want}: SSE-KMS keys must be in the bucket's region"
        ));
    }
    Ok(())
}

/// `s3://bucket/key` → `(bucket, key)`. The key is taken verbatim (S3 URIs are not
/// percent-encoded); it must be 1–1024 bytes without control characters.
pub fn s3_uri(s: &str) -> Result<(String, String), String> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| "an S3 URI must look like s3://bucket/key".to_string())?;
    let (b, key) = rest
        .split_once('/')
        .ok_or_else(|| "an S3 URI must name an object: s3://bucket/key".to_string())?;
    bucket(b).map_err(|e| format!("invalid bucket in the S3 URI: {e}"))?;
    if key.is_empty() {
        return Err("an S3 URI must name an object, not a bucket: s3://bucket/key".into());
    }
    if key.len() > 1024 {
        return Err("an S3 object key is at most 1024 bytes".into());
    }
    if key.chars().any(char::is_control) {
        return Err("the object key must not contain control characters".into());
    }
    Ok((b.to_string(), key.to_string()))
}

/// A hex SHA-256, normalised to lower case.
pub fn sha256_hex(s: &str) -> Result<String, String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("expected_sha256 must be 64 hexadecimal characters".into())
    }
}

/// Identifiers the customer chooses for correlation (`run_id`) or labels (`kind`):
/// 1–`max` characters from `[A-Za-z0-9._:-]`, safe in logs and URLs.
pub fn token(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("must be 1-{max} characters"));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) {
        return Err("may contain only letters, digits and . _ : -".into());
    }
    Ok(())
}

/// A display file name: 1–255 characters, no control characters, no `/`.
pub fn filename(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > 255 {
        return Err("must be 1-255 characters".into());
    }
    if s.chars().any(|c| c.is_control() || c == '/') {
        return Err("must not contain control characters or /".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        let ok = role_arn("arn:aws:iam::123456789012:role/service/sealgate/Reader+=,.@_-").expect("valid");
        assert_eq!(ok.path, "/service/sealgate/");
        assert_eq!(ok.name, "Reader+=,.@_-");
        assert_eq!(role_arn("arn:aws:iam::123456789012:role/R").expect("valid").path, "/");
        role_arn("arn:aws-cn:iam::123456789012:role/R").expect("china");
        for bad in [
            "",
            "arn:aws:iam::123456789012:user/R",
            "arn:aws:iam::12345678901:role/R",
            "arn:aws:iam::1234567890123:role/R",
            "arn:aws:iam::12345678901a:role/R",
            "arn:aws:iam:us-east-1:123456789012:role/R",
            "arn:aws:sts::123456789012:role/R",
            "arn:azure:iam::123456789012:role/R",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
            "arn:aws:iam::123456789012:role/p a/R",
            "arn:aws:iam::123456789012:role/R*",
            &format!("arn:aws:iam::123456789012:role/{}", "r".repeat(65)),
            &format!("arn:aws:iam::123456789012:role/{}/R", "p".repeat(512)),
            "role/R",
        ] {
            assert!(role_arn(bad).is_err(), "{bad:?} accepted");
        }
        role_arn(&format!("arn:aws:iam::123456789012:role/{}", "r".repeat(64))).expect("64 chars");
    }

    #[test]
    fn bucket_names() {
        for good in [
            "abc",
            "my-bucket.data-1",
            "a.b.c",
            "1bucket9",
            &"a".repeat(63),
            "xn-bucket",
            "s3alias-x",
            "192.168.5.4x",
        ] {
            assert!(bucket(good).is_ok(), "{good:?} refused: {:?}", bucket(good));
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-bucket",
            "my_bucket",
            "-bucket",
            "bucket-",
            ".bucket",
            "bucket.",
            "my..bucket",
            "192.168.5.4",
            "xn--bucket",
            "sthree-bucket",
            "amzn-s3-demo-bucket",
            "bucket-s3alias",
            "bucket--ol-s3",
            "bucket.mrap",
            "bucket--x-s3",
            "bucket--table-s3",
            "bücket",
        ] {
            assert!(bucket(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn kms_key_ids() {
        let p = Some("aws");
        let r = Some("us-east-1");
        for good in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "alias/my-key",
            "alias/aws/s3",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:alias/my-key",
        ] {
            assert!(kms_key_id(good, p, r).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "not-a-key",
            "alias/",
            "alias/has space",
            "1234abcd-12ab-34cd-56ef-1234567890a",
            "arn:aws:kms:us-east-1:111122223333:key/nope",
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-cn:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            &"k".repeat(2049),
        ] {
            assert!(kms_key_id(bad, p, r).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn s3_uris() {
        assert_eq!(
            s3_uri("s3://my-bucket/dir/a b?.txt").expect("valid"),
            ("my-bucket".into(), "dir/a b?.txt".into())
        );
        for bad in [
            "",
            "https://b/k",
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3://Bad/k",
            "s3://bucket/a\nb",
        ] {
            assert!(s3_uri(bad).is_err(), "{bad:?} accepted");
        }
        assert!(s3_uri(&format!("s3://bucket/{}", "k".repeat(1025))).is_err());
    }

    #[test]
    fn small_fields() {
        assert_eq!(sha256_hex(&"AB".repeat(32)).expect("hex"), "ab".repeat(32));
        assert!(sha256_hex(&"a".repeat(63)).is_err());
        assert!(sha256_hex(&"g".repeat(64)).is_err());
        assert!(token("run-1:2.3_x", 128).is_ok());
        assert!(token("", 128).is_err() && token("a b", 128).is_err() && token(&"a".repeat(129), 128).is_err());
        assert!(filename("report (1).pdf").is_ok());
        assert!(filename("a/b").is_err() && filename("").is_err() && filename("a\u{0}").is_err());
    }
}
