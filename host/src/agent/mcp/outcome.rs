//! What a tool answers, and above all what it answers when things did not go as asked.
//!
//! Every result carries a sentence for the model first and the facts as JSON after it
//! (also as `structuredContent`). A failure is a tool error (`isError: true`) whose
//! sentence says what to do next, because the model reads that text and acts on it: a
//! refusal from the host keeps the host's own code and message and adds the step in
//! this server's terms (which tool to call, which flag to set), since the host's
//! messages name REST paths the model cannot call.

use super::super::client::Answer;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{json, Value};

/// A tool that did what was asked.
pub fn done(summary: impl Into<String>, data: Value) -> CallToolResult {
    result(summary.into(), data, false)
}

/// A tool error: `summary` says what happened and what to do next.
pub fn failed(summary: impl Into<String>, data: Value) -> CallToolResult {
    result(summary.into(), data, true)
}

fn result(summary: String, data: Value, is_error: bool) -> CallToolResult {
    let pretty = serde_json::to_string_pretty(&data).unwrap_or_else(|_| data.to_string());
    let content = vec![ContentBlock::text(format!("{summary}\n\n{pretty}"))];
    let mut r = if is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    r.structured_content = Some(data);
    r
}

/// The host could not be reached (or answered a 5xx through [`refused`]).
pub fn unreachable(tool: &str, e: &dyn std::fmt::Display) -> CallToolResult {
    failed(
        format!(
            "{tool} could not reach sealgate: {e}. Nothing was decided; try again in a moment, and if it \
             persists tell the operator (SEALGATE_URL may be wrong)."
        ),
        json!({ "error": { "code": "SEALGATE_UNREACHABLE", "message": e.to_string() } }),
    )
}

/// A non-2xx answer of the host as a tool error, with the next step for its code.
pub fn refused(tool: &str, a: &Answer) -> CallToolResult {
    let code = a.code();
    let message = a.message();
    let next = next_step(tool, a);
    let mut error = a.body.get("error").cloned().unwrap_or_else(|| json!({}));
    if let Some(e) = error.as_object_mut() {
        e.insert("status".into(), json!(a.status));
        e.entry("code").or_insert_with(|| json!(code));
        e.entry("message").or_insert_with(|| json!(message));
    }
    failed(
        format!(
            "{tool} was refused by sealgate (HTTP {} {code}): {message}\nNext step: {next}",
            a.status
        ),
        json!({ "error": error, "next_step": next }),
    )
}

/// What to do about a refusal, in terms of this server's tools and settings.
fn next_step(tool: &str, a: &Answer) -> String {
    let code = a.code();
    match (a.status, code) {
        (401, _) => "the key in SEALGATE_TOKEN (or SEALGATE_ADMIN_TOKEN for byo_* tools) was refused: it may be \
                     revoked or its agent disabled. Ask the workspace admin for a new key; retrying will not help."
            .into(),
        (403, "GRANT_NOT_OWNER") => {
            "only the agent that requested a grant may use it; request your own with aws_request_access.".into()
        }
        (403, _) if tool.starts_with("byo_") => "BYO storage is managed with a workspace admin key: start `sealgate \
             mcp` with SEALGATE_ADMIN_TOKEN set to an admin key of this workspace (the agent key cannot do it)."
            .into(),
        (403, _) => "this key's role may not make that call; an agent key (SEALGATE_TOKEN) is what the aws_* and \
                     oidc_* tools need."
            .into(),
        (402, "BYO_NOT_ENABLED") => "BYO storage is off for this workspace; only the sealgate operator can turn \
                                     it on. Tell a human; retrying will not help."
            .into(),
        (404, "GRANT_UNKNOWN_ACCOUNT") => "sealgate has no ceiling for that AWS account, so nothing can be granted \
             there. Check the account id; a workspace admin sets the ceiling up."
            .into(),
        (404, "BYO_GRANT_NOT_FOUND") => "no bucket is connected; connect one with byo_register_bucket.".into(),
        (404, _) => "no such grant, token or resource for this key (a grant of another agent looks the same). \
                     Check the id."
            .into(),
        (409, "GRANT_NOT_ACTIVE") => "the grant is not active (pending, denied, timed out, expired or released): \
             aws_poll_grant says which. Request a new grant with aws_request_access if it is over."
            .into(),
        (409, "GRANT_IDEMPOTENCY_CONFLICT") => "that idempotency_key was used with another request: send the same \
             request again, or a new idempotency_key for a new one."
            .into(),
        (409, "GRANT_OUTSIDE_CEILING") => "the account's ceiling changed and no longer allows this grant; check \
             aws_describe_scope and request what it allows."
            .into(),
        (409, "GRANT_EXTERNAL_ID_UNVERIFIED") | (409, "GRANT_EXTERNAL_ID_NOT_ENFORCED") => "the role's trust policy \
             must require the workspace's External ID (sts:ExternalId); a workspace admin fixes the role and \
             re-checks the ceiling. Tell a human."
            .into(),
        (409, "GRANT_HARD_REVOKE_UNAVAILABLE") => {
            "hard revocation is not set up for this account; release without hard: true.".into()
        }
        (409, "BYO_GRANT_EXISTS") => format!(
            "a bucket is already connected{}. There are two safe paths: inspect it with byo_check_bucket (it \
             re-runs the probe and shows the grant), or, if it should be replaced, byo_disconnect_bucket and then \
             byo_register_bucket again. Nothing was overwritten.",
            a.body["error"]["grant_id"]
                .as_str()
                .map(|g| format!(" (grant {g})"))
                .unwrap_or_default()
        ),
        (409, "BYO_GRANT_IN_USE") => "artifacts still reference this bucket's grant (error.artifact_ids); the \
             grant stays connected while they exist. Keep it, or have an admin delete those artifacts first."
            .into(),
        (409, "BYO_GRANT_NOT_ACTIVE") => "the connected bucket's grant is not active: fix what byo_check_bucket \
             reports (its next_step), run byo_check_bucket until it is active, then try again."
            .into(),
        (409, "BYO_OBJECT_CHANGED") => "the object was overwritten while it was hashed; register it again.".into(),
        (_, "BYO_ASSUME_ROLE_FAILED") => byo_trust_step(&a.body["error"]),
        (_, c) if c.starts_with("BYO_") && a.status == 424 => "the customer's account refused the call: \
             byo_check_bucket shows the probe's checklist with the fix; apply it, then retry."
            .into(),
        (429, _) => "sealgate is rate-limiting this key; wait a few seconds and retry once.".into(),
        (400, _) => "the host refused the arguments (the message names the field); correct them and retry.".into(),
        (s, _) if s >= 500 => format!(
            "a problem on sealgate's side or AWS's, not in your request; retry in a moment. If it persists, give \
             the operator the request id {}.",
            a.body["error"]["request_id"].as_str().unwrap_or("(none)")
        ),
        _ => "read the message above; it says what the host needs.".into(),
    }
}

/// `BYO_ASSUME_ROLE_FAILED`: where the External ID goes.
pub fn byo_trust_step(error_or_grant: &Value) -> String {
    let ext = error_or_grant["external_id"]
        .as_str()
        .unwrap_or("the grant's external_id");
    format!(
        "sealgate could not assume the customer's role with its External ID. Put the External ID \"{ext}\" in \
         the role's trust policy, as the condition {{\"StringEquals\": {{\"sts:ExternalId\": \"{ext}\"}}}} on \
         the statement that lets sealgate's principal call sts:AssumeRole (a workspace admin gets the whole \
         trust policy from sealgate's byo/grant/policies endpoint), then call byo_check_bucket."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: &str, extra: Value) -> Answer {
        let mut error = json!({ "code": code, "message": "m" });
        if let (Some(e), Some(x)) = (error.as_object_mut(), extra.as_object()) {
            e.extend(x.clone());
        }
        Answer {
            status,
            body: json!({ "error": error }),
        }
    }

    fn text(r: &CallToolResult) -> String {
        r.content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect()
    }

    #[test]
    fn refusals_are_tool_errors_that_say_what_next() {
        let r = refused(
            "byo_register_bucket",
            &answer(409, "BYO_GRANT_EXISTS", json!({ "grant_id": "bg_1" })),
        );
        assert_eq!(r.is_error, Some(true));
        let t = text(&r);
        assert!(
            t.contains("byo_check_bucket") && t.contains("byo_disconnect_bucket"),
            "{t}"
        );
        assert!(t.contains("bg_1"), "{t}");

        let r = refused(
            "byo_register_artifact",
            &answer(424, "BYO_ASSUME_ROLE_FAILED", json!({ "external_id": "ext-123" })),
        );
        let t = text(&r);
        assert!(t.contains("sts:ExternalId") && t.contains("ext-123"), "{t}");

        let r = refused("byo_check_bucket", &answer(403, "FORBIDDEN", json!({})));
        assert!(text(&r).contains("SEALGATE_ADMIN_TOKEN"));
        let r = refused(
            "aws_request_access",
            &answer(503, "AWS_UNREACHABLE", json!({ "request_id": "req_9" })),
        );
        assert!(text(&r).contains("req_9"));
    }
}
