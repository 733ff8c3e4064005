//! AWS error responses in each protocol's wire shape, as the real services send them,
//! so the SDK parses them exactly as it would in production:
//!
//! - STS and IAM (awsQuery): `<ErrorResponse><Error><Type/><Code/><Message/></Error>
//!   <RequestId/></ErrorResponse>`, `text/xml`, `x-amzn-RequestId`.
//! - S3 (restXml, unwrapped): `<Error><Code/><Message/>…<RequestId/><HostId/></Error>`,
//!   `x-amz-request-id`, `x-amz-id-2`; no body for HEAD, as S3 sends none (so the SDK
//!   reports no code there except `NotFound` for 404, exactly as against real S3).
//! - KMS (awsJson1_1): `{"__type": code, "message": …}`, `x-amzn-ErrorType`,
//!   `application/x-amz-json-1.1`.

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Response, StatusCode};

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(super) type Body = BoxBody<Bytes, BoxError>;

pub(super) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(super) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A plain-text answer for requests the proxy cannot handle at all.
pub(super) fn plain(code: u16, text: &str) -> Response<Body> {
    let mut r = Response::new(full(text.to_string()));
    *r.status_mut() = status(code);
    r.headers_mut()
        .insert("content-type", hyper::header::HeaderValue::from_static("text/plain"));
    r
}

fn with_headers(code: u16, body: Body, headers: &[(&str, String)]) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status(code);
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(name, value);
        }
    }
    r
}

/// The awsQuery error body.
pub(super) fn query_error_body(service: &str, code: u16, err: &str, message: &str, request_id: &str) -> String {
    let ns = if service == "iam" {
        "https://iam.amazonaws.com/doc/2010-05-08/"
    } else {
        "https://sts.amazonaws.com/doc/2011-06-15/"
    };
    let kind = if code >= 500 { "Receiver" } else { "Sender" };
    format!(
        "<ErrorResponse xmlns=\"{ns}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        xml_escape(err),
        xml_escape(message),
        xml_escape(request_id)
    )
}

pub(super) fn query_error(service: &str, code: u16, err: &str, message: &str, request_id: &str) -> Response<Body> {
    with_headers(
        code,
        full(query_error_body(service, code, err, message, request_id)),
        &[
            ("content-type", "text/xml".into()),
            ("x-amzn-requestid", request_id.into()),
        ],
    )
}

fn s3_body(err: &str, message: &str, extra: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>{extra}<RequestId>{}</RequestId><HostId>fault-layer</HostId></Error>",
        xml_escape(err),
        xml_escape(message),
        xml_escape(request_id)
    )
}

fn s3_response(
    method: &str,
    code: u16,
    body: String,
    request_id: &str,
    mut headers: Vec<(&'static str, String)>,
) -> Response<Body> {
    headers.push(("x-amz-request-id", request_id.into()));
    headers.push(("x-amz-id-2", "fault-layer".into()));
    if method == "HEAD" {
        with_headers(code, full(Bytes::new()), &headers)
    } else {
        headers.push(("content-type", "application/xml".into()));
        with_headers(code, full(body), &headers)
    }
}

pub(super) fn s3_error(method: &str, code: u16, err: &str, message: &str, request_id: &str) -> Response<Body> {
    s3_response(
        method,
        code,
        s3_body(err, message, "", request_id),
        request_id,
        Vec::new(),
    )
}

/// S3's answers to a request sent to the wrong region.
pub(super) fn s3_wrong_region(
    method: &str,
    code: u16,
    region: &str,
    signed_region: Option<&str>,
    path: &str,
    request_id: &str,
) -> Response<Body> {
    let bucket = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let endpoint = format!("{bucket}.s3.{region}.amazonaws.com");
    let (err, message, extra) = match code {
        400 => (
            "AuthorizationHeaderMalformed",
            format!(
                "The authorization header is malformed; the region '{}' is wrong; expecting '{region}'",
                signed_region.unwrap_or("us-east-1")
            ),
            format!("<Region>{}</Region>", xml_escape(region)),
        ),
        307 => (
            "TemporaryRedirect",
            "Please re-send this request to the specified temporary endpoint. Continue to use the original request endpoint for future requests.".to_string(),
            format!(
                "<Endpoint>{}</Endpoint><Bucket>{}</Bucket>",
                xml_escape(&endpoint),
                xml_escape(bucket)
            ),
        ),
        _ => (
            "PermanentRedirect",
            "The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.".to_string(),
            format!(
                "<Endpoint>{}</Endpoint><Bucket>{}</Bucket>",
                xml_escape(&endpoint),
                xml_escape(bucket)
            ),
        ),
    };
    s3_response(
        method,
        code,
        s3_body(err, &message, &extra, request_id),
        request_id,
        vec![("x-amz-bucket-region", region.to_string())],
    )
}

pub(super) fn json_error(code: u16, err: &str, message: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({ "__type": err, "message": message }).to_string();
    with_headers(
        code,
        full(body),
        &[
            ("content-type", "application/x-amz-json-1.1".into()),
            ("x-amzn-errortype", err.into()),
            ("x-amzn-requestid", request_id.into()),
        ],
    )
}

/// An injected error in the protocol shape of `service`.
pub(super) fn error_for(
    service: &str,
    method: &str,
    code: u16,
    err: &str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    match service {
        "sts" | "iam" | "unknown" => query_error(service, code, err, message, request_id),
        "kms" => json_error(code, err, message, request_id),
        _ => s3_error(method, code, err, message, request_id),
    }
}

/// The text between the first `<tag>` and the following `</tag>`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

/// moto answers IAM-auth failures (AccessDenied, InvalidClientTokenId,
/// SignatureDoesNotMatch) to STS and IAM in the EC2 shape
/// (`<…><Errors><Error><Code>…`), in which aws-sdk-rust's awsQuery parser finds no code.
/// Returns the same code and message in the awsQuery shape, or `None` if `body` is not
/// of that shape. Text is carried over still escaped, as it was.
pub(super) fn rewrite_ec2_error(service: &str, code: u16, body: &[u8], request_id: &str) -> Option<String> {
    let xml = std::str::from_utf8(body).ok()?;
    let errors = element(xml, "Errors")?;
    let err = element(errors, "Code")?;
    let message = element(errors, "Message").unwrap_or("");
    let rid = element(xml, "RequestID")
        .or_else(|| element(xml, "RequestId"))
        .unwrap_or(request_id);
    let ns = if service == "iam" {
        "https://iam.amazonaws.com/doc/2010-05-08/"
    } else {
        "https://sts.amazonaws.com/doc/2011-06-15/"
    };
    let kind = if code >= 500 { "Receiver" } else { "Sender" };
    Some(format!(
        "<ErrorResponse xmlns=\"{ns}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{err}</Code>\n    <Message>{message}</Message>\n  </Error>\n  <RequestId>{rid}</RequestId>\n</ErrorResponse>\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_shape_is_rewritten() {
        let moto = br#"<?xml version="1.0" encoding="utf-8"?>
<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: a &amp; b is not authorized</Message><Type>Sender</Type></Error></Errors></ErrorResponse>"#;
        let out = rewrite_ec2_error("sts", 403, moto, "rid").expect("rewritten");
        assert!(out.contains("<Code>AccessDenied</Code>"), "{out}");
        assert!(
            out.contains("<Message>User: a &amp; b is not authorized</Message>"),
            "{out}"
        );
        assert!(out.contains("<RequestId>rid</RequestId>"), "{out}");
        assert!(!out.contains("<Errors>"), "{out}");
        let query = query_error_body("sts", 403, "AccessDenied", "no", "rid");
        assert_eq!(rewrite_ec2_error("sts", 403, query.as_bytes(), "rid"), None);
        assert_eq!(rewrite_ec2_error("sts", 403, b"\xff\xfe", "rid"), None);
    }
}
