//! The AWS regions a grant may name, and the partition each belongs to.
//!
//! A static list on purpose: the region decides which STS and S3 endpoints sealgate
//! calls and which partition the customer's ARNs live in, so a typo must be refused at
//! registration rather than surface later as an opaque endpoint-resolution failure.
//! Opt-in regions are included; adding a region AWS launches is a one-line change.

/// `(region, partition)` for the commercial, GovCloud and China partitions.
const REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "aws"),
    ("us-east-2", "aws"),
    ("us-west-1", "aws"),
    ("us-west-2", "aws"),
    ("af-south-1", "aws"),
    ("ap-east-1", "aws"),
    ("ap-east-2", "aws"),
    ("ap-south-1", "aws"),
    ("ap-south-2", "aws"),
    ("ap-southeast-1", "aws"),
    ("ap-southeast-2", "aws"),
    ("ap-southeast-3", "aws"),
    ("ap-southeast-4", "aws"),
    ("ap-southeast-5", "aws"),
    ("ap-southeast-6", "aws"),
    ("ap-southeast-7", "aws"),
    ("ap-northeast-1", "aws"),
    ("ap-northeast-2", "aws"),
    ("ap-northeast-3", "aws"),
    ("ca-central-1", "aws"),
    ("ca-west-1", "aws"),
    ("eu-central-1", "aws"),
    ("eu-central-2", "aws"),
    ("eu-west-1", "aws"),
    ("eu-west-2", "aws"),
    ("eu-west-3", "aws"),
    ("eu-south-1", "aws"),
    ("eu-south-2", "aws"),
    ("eu-north-1", "aws"),
    ("il-central-1", "aws"),
    ("me-south-1", "aws"),
    ("me-central-1", "aws"),
    ("mx-central-1", "aws"),
    ("sa-east-1", "aws"),
    ("us-gov-east-1", "aws-us-gov"),
    ("us-gov-west-1", "aws-us-gov"),
    ("cn-north-1", "aws-cn"),
    ("cn-northwest-1", "aws-cn"),
];

/// The partition of a known region, `None` for anything else.
pub fn partition(region: &str) -> Option<&'static str> {
    REGIONS.iter().find(|(r, _)| *r == region).map(|(_, p)| *p)
}

/// The DNS suffix of a partition's service endpoints (for `kms:ViaService`).
pub fn dns_suffix(partition: &str) -> &'static str {
    if partition == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_regions() {
        assert_eq!(partition("us-east-1"), Some("aws"));
        assert_eq!(partition("us-gov-west-1"), Some("aws-us-gov"));
        assert_eq!(partition("cn-north-1"), Some("aws-cn"));
        assert_eq!(partition("us-east-3"), None);
        assert_eq!(partition("US-EAST-1"), None);
        assert_eq!(partition(""), None);
    }
}
