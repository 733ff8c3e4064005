//! Policy ceilings and how a request is decided against one.
//!
//! A ceiling is what a workspace may ever get in one AWS account: the role to assume,
//! the actions, resource patterns and regions, and the longest credential life. Its
//! ordered rules then say which requests inside it are approved automatically, which go
//! to a human, and which are refused. Evaluation is a pure function so it can be
//! previewed without side effects, tested as a decision table, and benchmarked.
//!
//! Order of evaluation:
//! 1. the ceiling: every requested action, resource and region must lie inside it and
//!    the TTL within its maximum, else `hard_deny` naming the first offender;
//! 2. the rules, in order: the first whose every stated condition holds decides;
//! 3. no rule matched: `route_to_approver`.
//!
//! What "a condition holds" means depends on the rule's decision, so that bundling
//! cannot launder a request. An `auto_approve` rule's action (resource, region) list
//! holds only if it *covers* every requested one; a `route_to_approver` or `hard_deny`
//! rule's list holds if it *overlaps* any requested one. Otherwise asking for
//! `s3:GetObject` together with a denied `s3:DeleteObject` would slip past the deny rule
//! (it does not cover both) and the auto-approve rule (same) to a human, or worse. The
//! session policy grants the cross product of actions, resources and regions, so judging
//! each dimension on its own is exact.

use super::pattern::{Kind, Pattern};
use serde::{Deserialize, Serialize};

/// STS's shortest and longest session for a role (`DurationSeconds`).
pub const STS_MIN_TTL: u64 = 900;
pub const STS_MAX_TTL: u64 = 43_200;
/// STS refuses inline session policies longer than this (plain text, before packing).
pub const MAX_SESSION_POLICY_CHARS: usize = 2048;
/// Bounds on list sizes, so a ceiling or request cannot make evaluation expensive.
pub const MAX_PATTERNS: usize = 100;
pub const MAX_RULES: usize = 500;
const MAX_PATTERN_LEN: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMode {
    /// `AssumeRoleWithWebIdentity` with an enclave-minted token: no AWS keys on the host.
    WebIdentity,
    /// `AssumeRole` with the host's default credential chain.
    AssumeRole,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleDecision {
    AutoApprove,
    RouteToApprover,
    HardDeny,
}

/// One ordered rule. Absent conditions always hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub decision: RuleDecision,
    pub actions: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
    pub regions: Option<Vec<String>>,
    pub max_ttl_seconds: Option<u64>,
    pub reason: String,
    /// `route_to_approver` only: how many distinct approver keys must approve
    /// (1 to [`MAX_APPROVALS_REQUIRED`]; a deny by any one decides).
    #[serde(default = "one_approval")]
    pub approvals_required: u8,
}

/// The most distinct approvers a rule can require.
pub const MAX_APPROVALS_REQUIRED: u8 = 10;

fn one_approval() -> u8 {
    1
}

fn default_sts_region() -> String {
    "us-east-1".into()
}

/// A workspace's ceiling in one AWS account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    pub role_arn: String,
    pub credential_mode: CredentialMode,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub regions: Vec<String>,
    pub max_ttl_seconds: u64,
    /// The region whose STS endpoint issues this account's credentials.
    #[serde(default = "default_sts_region")]
    pub sts_region: String,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// A role in the same account that the broker assumes (with the account's External
    /// ID) to put and delete its deny policy on `role_arn`; without one, hard
    /// revocation is unavailable (see `revoke`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoker_role_arn: Option<String>,
}

/// What an agent asks for. Actions and resources may contain wildcards; regions are
/// concrete (they become an `aws:RequestedRegion` equality condition).
#[derive(Debug, Clone)]
pub struct AccessRequest {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub regions: Vec<String>,
    pub ttl_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub decision: RuleDecision,
    pub reason: String,
    /// Index of the deciding rule; `None` when the ceiling or the default decided.
    pub rule: Option<usize>,
}

/// A field that does not validate, named so the caller can fix it.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// `service:Action` with wildcards allowed in the action, or `*`.
fn valid_action(a: &str) -> bool {
    if a == "*" {
        return true;
    }
    let Some((service, action)) = a.split_once(':') else {
        return false;
    };
    !service.is_empty()
        && service.len() <= 64
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !action.is_empty()
        && action.len() <= 128
        && action
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
}

/// An ARN (`arn:partition:service:region:account:resource`) or `*`. Wildcards are not
/// allowed in the partition or service (IAM refuses them there).
fn valid_resource(r: &str) -> bool {
    if r == "*" {
        return true;
    }
    if r.len() > MAX_PATTERN_LEN || r.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    let parts: Vec<&str> = r.splitn(6, ':').collect();
    let fixed = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match parts.as_slice() {
        ["arn", partition, service, _region, _account, resource] => {
            fixed(partition) && partition.starts_with("aws") && fixed(service) && !resource.is_empty()
        }
        // `arn:aws:s3:*` style: a trailing `*` standing for the rest.
        ["arn", partition, service, rest @ ..] => {
            fixed(partition) && fixed(service) && rest.last().is_some_and(|l| l.ends_with('*'))
        }
        _ => false,
    }
}

/// A region AWS has (the same list BYO storage validates against).
pub fn valid_region(r: &str) -> bool {
    crate::byo::validate::region(r).is_ok()
}

/// `arn:<partition>:iam::<12 digits>:role/<path/>name` (one rule for the whole host:
/// BYO storage validates customer roles with the same function).
pub fn valid_role_arn(arn: &str) -> bool {
    crate::byo::validate::role_arn(arn).is_ok()
}

/// The 12-digit account of a role ARN already checked by [`valid_role_arn`].
pub fn role_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4)
}

fn check_list(field: &str, items: &[String], ok: impl Fn(&str) -> bool, what: &str) -> Result<(), Invalid> {
    if items.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if items.len() > MAX_PATTERNS {
        return Err(invalid(field, format!("at most {MAX_PATTERNS} entries")));
    }
    match items.iter().find(|i| !ok(i)) {
        Some(bad) => Err(invalid(field, format!("{bad:?} is not {what}"))),
        None => Ok(()),
    }
}

const ACTION_SHAPE: &str = "an IAM action (`service:Action`, wildcards * and ? allowed, or `*`)";
const RESOURCE_SHAPE: &str = "a resource ARN pattern (`arn:aws:service:region:account:resource`, or `*`)";
const REGION_SHAPE: &str = "an AWS region such as us-east-1";

fn region_pattern(r: &str) -> bool {
    r == "*" || valid_region(r)
}

impl Ceiling {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !valid_role_arn(&self.role_arn) {
            return Err(invalid(
                "role_arn",
                format!(
                    "{:?} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)",
                    self.role_arn
                ),
            ));
        }
        if let Some(r) = &self.revoker_role_arn {
            if !valid_role_arn(r) {
                return Err(invalid(
                    "revoker_role_arn",
                    format!("{r:?} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)"),
                ));
            }
            if role_account(r) != role_account(&self.role_arn) {
                return Err(invalid(
                    "revoker_role_arn",
                    "must be in the same account as role_arn: it acts on the grant role in that account",
                ));
            }
        }
        check_list("actions", &self.actions, valid_action, ACTION_SHAPE)?;
        check_list("resources", &self.resources, valid_resource, RESOURCE_SHAPE)?;
        check_list(
            "regions",
            &self.regions,
            region_pattern,
            "an AWS region such as us-east-1, or *",
        )?;
        if !(STS_MIN_TTL..=STS_MAX_TTL).contains(&self.max_ttl_seconds) {
            return Err(invalid(
                "max_ttl_seconds",
                format!("must be within STS's [{STS_MIN_TTL}, {STS_MAX_TTL}]"),
            ));
        }
        if !valid_region(&self.sts_region) {
            return Err(invalid(
                "sts_region",
                format!("{:?} is not {REGION_SHAPE}", self.sts_region),
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(invalid("rules", format!("at most {MAX_RULES} rules")));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let f = |name: &str| format!("rules[{i}].{name}");
            if let Some(a) = &rule.actions {
                check_list(&f("actions"), a, valid_action, ACTION_SHAPE)?;
            }
            if let Some(r) = &rule.resources {
                check_list(&f("resources"), r, valid_resource, RESOURCE_SHAPE)?;
            }
            if let Some(r) = &rule.regions {
                check_list(
                    &f("regions"),
                    r,
                    region_pattern,
                    "an AWS region such as us-east-1, or *",
                )?;
            }
            if !(1..=MAX_APPROVALS_REQUIRED).contains(&rule.approvals_required) {
                return Err(invalid(
                    f("approvals_required"),
                    format!("must be within [1, {MAX_APPROVALS_REQUIRED}]"),
                ));
            }
            if rule.approvals_required > 1 && rule.decision != RuleDecision::RouteToApprover {
                return Err(invalid(
                    f("approvals_required"),
                    "only a route_to_approver rule takes approvals; remove it or change the decision",
                ));
            }
            if let Some(t) = rule.max_ttl_seconds {
                if !(STS_MIN_TTL..=STS_MAX_TTL).contains(&t) {
                    return Err(invalid(
                        f("max_ttl_seconds"),
                        format!("must be within [{STS_MIN_TTL}, {STS_MAX_TTL}]"),
                    ));
                }
            }
            if rule.reason.trim().is_empty() || rule.reason.chars().count() > 512 {
                return Err(invalid(f("reason"), "must be 1-512 characters"));
            }
        }
        Ok(())
    }

    /// The ceiling compiled for repeated evaluation.
    pub fn compile(&self) -> Compiled<'_> {
        let rules = self
            .rules
            .iter()
            .map(|r| CompiledRule {
                rule: r,
                actions: r.actions.as_ref().map(|a| compile(a, Kind::Action)),
                resources: r.resources.as_ref().map(|a| compile(a, Kind::Resource)),
                regions: r.regions.as_ref().map(|a| compile(a, Kind::Plain)),
            })
            .collect();
        Compiled {
            ceiling: self,
            actions: compile(&self.actions, Kind::Action),
            resources: compile(&self.resources, Kind::Resource),
            regions: compile(&self.regions, Kind::Plain),
            rules,
        }
    }
}

impl AccessRequest {
    pub fn validate(&self) -> Result<(), Invalid> {
        check_list("actions", &self.actions, valid_action, ACTION_SHAPE)?;
        check_list("resources", &self.resources, valid_resource, RESOURCE_SHAPE)?;
        check_list("regions", &self.regions, valid_region, REGION_SHAPE)?;
        if !(STS_MIN_TTL..=STS_MAX_TTL).contains(&self.ttl_seconds) {
            return Err(invalid(
                "ttl_seconds",
                format!("must be within STS's [{STS_MIN_TTL}, {STS_MAX_TTL}]"),
            ));
        }
        let len = session_policy(self, 0).chars().count();
        if len > MAX_SESSION_POLICY_CHARS {
            return Err(invalid(
                "actions",
                format!(
                    "the session policy for this request would be {len} characters; STS accepts at most \
                     {MAX_SESSION_POLICY_CHARS}: request fewer or broader actions/resources"
                ),
            ));
        }
        Ok(())
    }
}

fn compile(items: &[String], kind: Kind) -> Vec<Pattern> {
    items.iter().map(|i| Pattern::new(i, kind)).collect()
}

/// Whether a rule's list holds for the requested items (see the module documentation).
fn holds(decision: RuleDecision, allowed: &Option<Vec<Pattern>>, requested: &[Pattern], text: &[String]) -> bool {
    match allowed {
        None => true,
        Some(a) if decision == RuleDecision::AutoApprove => first_outside(a, requested, text).is_none(),
        Some(a) => requested.iter().any(|r| a.iter().any(|p| p.overlaps(r))),
    }
}

struct CompiledRule<'a> {
    rule: &'a Rule,
    actions: Option<Vec<Pattern>>,
    resources: Option<Vec<Pattern>>,
    regions: Option<Vec<Pattern>>,
}

/// A ceiling with its patterns compiled once.
pub struct Compiled<'a> {
    ceiling: &'a Ceiling,
    actions: Vec<Pattern>,
    resources: Vec<Pattern>,
    regions: Vec<Pattern>,
    rules: Vec<CompiledRule<'a>>,
}

/// The first requested item not covered by any of `allowed`.
fn first_outside<'r>(allowed: &[Pattern], requested: &'r [Pattern], text: &'r [String]) -> Option<&'r str> {
    requested
        .iter()
        .zip(text)
        .find(|(req, _)| !allowed.iter().any(|a| a.covers(req)))
        .map(|(_, t)| t.as_str())
}

impl Compiled<'_> {
    pub fn evaluate(&self, req: &AccessRequest) -> Decision {
        let actions = compile(&req.actions, Kind::Action);
        let resources = compile(&req.resources, Kind::Resource);
        let regions = compile(&req.regions, Kind::Plain);
        let deny = |reason: String| Decision {
            decision: RuleDecision::HardDeny,
            reason,
            rule: None,
        };
        if let Some(a) = first_outside(&self.actions, &actions, &req.actions) {
            return deny(format!(
                "action {a} is outside the ceiling (allowed: {})",
                self.ceiling.actions.join(", ")
            ));
        }
        if let Some(r) = first_outside(&self.resources, &resources, &req.resources) {
            return deny(format!(
                "resource {r} is outside the ceiling (allowed: {})",
                self.ceiling.resources.join(", ")
            ));
        }
        if let Some(r) = first_outside(&self.regions, &regions, &req.regions) {
            return deny(format!(
                "region {r} is outside the ceiling (allowed: {})",
                self.ceiling.regions.join(", ")
            ));
        }
        if req.ttl_seconds > self.ceiling.max_ttl_seconds {
            return deny(format!(
                "ttl_seconds {} exceeds the ceiling's max_ttl_seconds {}",
                req.ttl_seconds, self.ceiling.max_ttl_seconds
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let d = rule.rule.decision;
            if holds(d, &rule.actions, &actions, &req.actions)
                && holds(d, &rule.resources, &resources, &req.resources)
                && holds(d, &rule.regions, &regions, &req.regions)
                && rule.rule.max_ttl_seconds.is_none_or(|t| req.ttl_seconds <= t)
            {
                return Decision {
                    decision: rule.rule.decision,
                    reason: rule.rule.reason.clone(),
                    rule: Some(i),
                };
            }
        }
        Decision {
            decision: RuleDecision::RouteToApprover,
            reason: "no rule matched; an approver decides".into(),
            rule: None,
        }
    }
}

/// Decides `req` against `ceiling` (see the module documentation for the order).
pub fn evaluate(ceiling: &Ceiling, req: &AccessRequest) -> Decision {
    ceiling.compile().evaluate(req)
}

/// The inline session policy sent to STS: exactly the request's actions on its
/// resources, only in its regions, and only before `not_after` (Unix seconds; the
/// grant's expiry). The effective permissions are the role's policies intersected with
/// this, so the credentials can never exceed the grant — not even in time: STS sessions
/// last at least 900 s, and the `aws:CurrentTime` bound is what lets a grant with less
/// left still get credentials that stop working exactly when it ends.
pub fn session_policy(req: &AccessRequest, not_after: u64) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SealgateGrant",
            "Effect": "Allow",
            "Action": req.actions,
            "Resource": req.resources,
            "Condition": {
                "StringEquals": { "aws:RequestedRegion": req.regions },
                "DateLessThan": { "aws:CurrentTime": iso8601(not_after) }
            }
        }]
    })
    .to_string()
}

/// `2026-11-22T23:00:00Z` (civil-from-days, proleptic Gregorian, UTC).
fn iso8601(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceiling(rules: Vec<Rule>) -> Ceiling {
        Ceiling {
            role_arn: "arn:aws:iam::123456789012:role/agents".into(),
            credential_mode: CredentialMode::WebIdentity,
            actions: vec!["s3:Get*".into(), "s3:List*".into(), "s3:PutObject".into()],
            resources: vec!["arn:aws:s3:::data".into(), "arn:aws:s3:::data/*".into()],
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            max_ttl_seconds: 3600,
            sts_region: "us-east-1".into(),
            rules,
            revoker_role_arn: None,
        }
    }

    fn rule(decision: RuleDecision, actions: Option<&[&str]>, ttl: Option<u64>, reason: &str) -> Rule {
        Rule {
            decision,
            actions: actions.map(|a| a.iter().map(|s| s.to_string()).collect()),
            resources: None,
            regions: None,
            max_ttl_seconds: ttl,
            reason: reason.into(),
            approvals_required: 1,
        }
    }

    fn req(actions: &[&str], resources: &[&str], regions: &[&str], ttl: u64) -> AccessRequest {
        AccessRequest {
            actions: actions.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            regions: regions.iter().map(|s| s.to_string()).collect(),
            ttl_seconds: ttl,
        }
    }

    #[test]
    fn decision_table() {
        use RuleDecision::*;
        let c = ceiling(vec![
            rule(HardDeny, Some(&["s3:PutObject"]), None, "writes need a ticket"),
            rule(AutoApprove, Some(&["s3:Get*", "s3:List*"]), Some(1800), "short reads"),
        ]);
        c.validate().unwrap();
        let obj = ["arn:aws:s3:::data/x"];
        let table: Vec<(AccessRequest, RuleDecision, Option<usize>, &str)> = vec![
            (
                req(&["s3:GetObject"], &obj, &["us-east-1"], 900),
                AutoApprove,
                Some(1),
                "short reads",
            ),
            (
                req(&["S3:getobject"], &obj, &["us-east-1"], 900),
                AutoApprove,
                Some(1),
                "short reads",
            ),
            (
                req(&["s3:Get*"], &obj, &["us-east-1"], 900),
                AutoApprove,
                Some(1),
                "short reads",
            ),
            (
                req(&["s3:GetObject"], &obj, &["us-east-1"], 3600),
                RouteToApprover,
                None,
                "no rule matched",
            ),
            (
                req(&["s3:PutObject"], &obj, &["us-east-1"], 900),
                HardDeny,
                Some(0),
                "writes need a ticket",
            ),
            (
                req(&["s3:GetObject", "s3:PutObject"], &obj, &["us-east-1"], 900),
                HardDeny,
                Some(0),
                "ticket",
            ),
            (
                req(&["s3:DeleteObject"], &obj, &["us-east-1"], 900),
                HardDeny,
                None,
                "action s3:DeleteObject",
            ),
            (req(&["s3:*"], &obj, &["us-east-1"], 900), HardDeny, None, "action s3:*"),
            (
                req(&["s3:GetObject"], &["arn:aws:s3:::other/x"], &["us-east-1"], 900),
                HardDeny,
                None,
                "resource arn:aws:s3:::other/x",
            ),
            (
                req(&["s3:GetObject"], &["arn:aws:s3:::data*"], &["us-east-1"], 900),
                HardDeny,
                None,
                "resource",
            ),
            (
                req(&["s3:GetObject"], &obj, &["ap-south-1"], 900),
                HardDeny,
                None,
                "region ap-south-1",
            ),
            (
                req(&["s3:GetObject"], &obj, &["us-east-1"], 7200),
                HardDeny,
                None,
                "ttl_seconds 7200",
            ),
        ];
        for (r, want, rule, reason) in table {
            let d = evaluate(&c, &r);
            assert_eq!((d.decision, d.rule), (want, rule), "{r:?} → {d:?}");
            assert!(
                d.reason.contains(reason),
                "{r:?}: reason {:?} lacks {reason:?}",
                d.reason
            );
        }
    }

    #[test]
    fn escalation_rules_trigger_on_any_overlap() {
        use RuleDecision::*;
        let c = ceiling(vec![
            rule(RouteToApprover, Some(&["s3:List*"]), None, "listing is reviewed"),
            rule(AutoApprove, None, None, "everything else"),
        ]);
        let obj = ["arn:aws:s3:::data/x"];
        // A wildcard request that merely overlaps the escalation rule is escalated.
        let d = evaluate(&c, &req(&["s3:*Bucket"], &obj, &["us-east-1"], 900));
        assert_eq!(d.decision, HardDeny, "s3:*Bucket is not inside the ceiling at all");
        let d = evaluate(&c, &req(&["s3:GetObject", "s3:ListBucket"], &obj, &["us-east-1"], 900));
        assert_eq!((d.decision, d.rule), (RouteToApprover, Some(0)));
        let d = evaluate(&c, &req(&["s3:GetObject"], &obj, &["us-east-1"], 900));
        assert_eq!((d.decision, d.rule), (AutoApprove, Some(1)));
    }

    #[test]
    fn rule_order_decides() {
        use RuleDecision::*;
        let r = req(&["s3:GetObject"], &["arn:aws:s3:::data/x"], &["us-east-1"], 900);
        let a = ceiling(vec![
            rule(AutoApprove, None, None, "first"),
            rule(HardDeny, None, None, "second"),
        ]);
        assert_eq!(evaluate(&a, &r).reason, "first");
        let b = ceiling(vec![
            rule(HardDeny, None, None, "second"),
            rule(AutoApprove, None, None, "first"),
        ]);
        assert_eq!(evaluate(&b, &r).decision, HardDeny);
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = ceiling(vec![]);
        c.role_arn = "arn:aws:iam::12345:role/x".into();
        assert_eq!(c.validate().unwrap_err().field, "role_arn");
        let mut c = ceiling(vec![]);
        c.actions = vec!["s3 GetObject".into()];
        assert_eq!(c.validate().unwrap_err().field, "actions");
        let mut c = ceiling(vec![]);
        c.resources = vec!["arn:aws:*:::x".into()];
        assert_eq!(c.validate().unwrap_err().field, "resources");
        let mut c = ceiling(vec![]);
        c.max_ttl_seconds = 60;
        assert_eq!(c.validate().unwrap_err().field, "max_ttl_seconds");
        let mut c = ceiling(vec![rule(RuleDecision::AutoApprove, Some(&[]), None, "x")]);
        assert_eq!(c.validate().unwrap_err().field, "rules[0].actions");
        c.rules[0].actions = None;
        c.rules[0].reason = " ".into();
        assert_eq!(c.validate().unwrap_err().field, "rules[0].reason");
        let r = req(&["s3:GetObject"], &["arn:aws:s3:::data/x"], &["us-*"], 900);
        assert_eq!(r.validate().unwrap_err().field, "regions");
        let r = req(&["s3:GetObject"], &["arn:aws:s3:::data/x"], &["us-east-1"], 100);
        assert_eq!(r.validate().unwrap_err().field, "ttl_seconds");
        let long: Vec<String> = (0..60).map(|i| format!("arn:aws:s3:::bucket-{i}/prefix/*")).collect();
        let r = AccessRequest {
            actions: vec!["s3:GetObject".into()],
            resources: long,
            regions: vec!["us-east-1".into()],
            ttl_seconds: 900,
        };
        assert!(r.validate().unwrap_err().message.contains("2048"));
    }

    #[test]
    fn shapes() {
        for ok in [
            "arn:aws:iam::123456789012:role/agents",
            "arn:aws:iam::123456789012:role/team/x/agents",
            "arn:aws-us-gov:iam::123456789012:role/a+b=c,d.e@f_g-h",
        ] {
            assert!(valid_role_arn(ok), "{ok}");
        }
        for bad in [
            "arn:aws:iam::123456789012:user/agents",
            "arn:aws:iam::12345678901a:role/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
            "arn:other:iam::123456789012:role/x",
        ] {
            assert!(!valid_role_arn(bad), "{bad}");
        }
        for ok in ["us-east-1", "us-gov-west-1", "cn-north-1", "eu-central-2"] {
            assert!(valid_region(ok), "{ok}");
        }
        for bad in ["us-east", "US-EAST-1", "useast1", "us-east-1a", "xx-east-9", ""] {
            assert!(!valid_region(bad), "{bad}");
        }
        assert_eq!(role_account("arn:aws:iam::123456789012:role/x"), Some("123456789012"));
    }

    #[test]
    fn session_policy_is_narrowed_to_the_request() {
        let r = req(&["s3:GetObject"], &["arn:aws:s3:::data/x"], &["eu-west-1"], 900);
        let p: serde_json::Value = serde_json::from_str(&session_policy(&r, 1_795_388_400)).unwrap();
        let s = &p["Statement"][0];
        assert_eq!(s["Action"], serde_json::json!(["s3:GetObject"]));
        assert_eq!(s["Resource"], serde_json::json!(["arn:aws:s3:::data/x"]));
        assert_eq!(
            s["Condition"]["StringEquals"]["aws:RequestedRegion"],
            serde_json::json!(["eu-west-1"])
        );
        assert_eq!(
            s["Condition"]["DateLessThan"]["aws:CurrentTime"],
            serde_json::json!("2026-11-22T23:00:00Z")
        );
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(iso8601(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
