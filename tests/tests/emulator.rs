//! The AWS test harness itself, proven with the real SDK clients: moto in server mode
//! (`sealgate_tests::aws`) and the fault layer in front of it (`sealgate_tests::fault`).
//! Each fault shape must come out of the SDK with the code the real service would give;
//! web-identity tokens from a real deployment must be checked the way STS checks them.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sts::error::ProvideErrorMetadata;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sealgate_tests::aws::{self, block_on, Moto};
use sealgate_tests::fault::{Fault, FaultLayer, Rule, Seen};
use sealgate_tests::Deployment;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const R: &str = "us-east-1";

/// A bucket name no other test in this process uses (the shared server is shared).
fn bucket(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("emu-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn only<'a>(seen: &'a [Seen], service: &str, action: &str) -> Vec<&'a Seen> {
    seen.iter()
        .filter(|s| s.service == service && s.action == action)
        .collect()
}

#[test]
fn shared_server_answers_and_is_shared() {
    let moto = Moto::shared();
    assert!(std::ptr::eq(moto, Moto::shared()), "one server per process");
    assert!(moto.url.ends_with(&format!(":{}", moto.port)), "{}", moto.url);
    let id = block_on(async {
        aws::sts(&moto.url, R)
            .await
            .get_caller_identity()
            .send()
            .await
            .expect("GetCallerIdentity against moto")
    });
    assert_eq!(id.account(), Some(aws::ACCOUNT));
}

#[test]
fn host_env_points_everything_at_the_endpoint_and_nothing_at_the_developer() {
    let env = Moto::host_env("http://127.0.0.1:1");
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{k} missing from {env:?}"))
    };
    assert_eq!(get("AWS_ENDPOINT_URL"), "http://127.0.0.1:1");
    assert_eq!(get("AWS_REGION"), "us-east-1");
    assert_eq!(get("AWS_EC2_METADATA_DISABLED"), "true");
    assert_eq!(get("AWS_CONFIG_FILE"), "/dev/null");
    assert_eq!(get("AWS_SHARED_CREDENTIALS_FILE"), "/dev/null");
    assert!(!get("AWS_ACCESS_KEY_ID").is_empty() && !get("AWS_SECRET_ACCESS_KEY").is_empty());
    assert_eq!(get("AWS_SESSION_TOKEN"), "");
}

#[test]
fn objects_round_trip_through_the_proxy() {
    let moto = Moto::shared();
    let fl = FaultLayer::start(&moto.url);
    let b = bucket("rt");
    block_on(async {
        let s3 = aws::s3(&fl.url, R).await;
        s3.create_bucket().bucket(&b).send().await.expect("CreateBucket");
        s3.put_object()
            .bucket(&b)
            .key("dir/hello.txt")
            .body(ByteStream::from_static(b"hello, moto"))
            .send()
            .await
            .expect("PutObject");
        let got = s3
            .get_object()
            .bucket(&b)
            .key("dir/hello.txt")
            .send()
            .await
            .expect("GetObject");
        let data = got.body.collect().await.expect("body").into_bytes();
        assert_eq!(&data[..], b"hello, moto");
        let head = s3
            .head_object()
            .bucket(&b)
            .key("dir/hello.txt")
            .send()
            .await
            .expect("HeadObject");
        assert_eq!(head.content_length(), Some(11), "HEAD keeps Content-Length");
        let list = s3.list_objects_v2().bucket(&b).send().await.expect("ListObjectsV2");
        assert_eq!(list.key_count(), Some(1));
        s3.get_bucket_location()
            .bucket(&b)
            .send()
            .await
            .expect("GetBucketLocation");
        // One pooled client, many calls: the proxy keeps its connection to the SDK
        // usable although moto closes every one of its own.
        for _ in 0..20 {
            s3.head_bucket().bucket(&b).send().await.expect("HeadBucket");
        }
        let missing = s3
            .head_object()
            .bucket(&b)
            .key("nope")
            .send()
            .await
            .expect_err("no such key");
        assert!(missing.into_service_error().is_not_found());
    });
    let seen = fl.requests();
    for action in [
        "CreateBucket",
        "PutObject",
        "GetObject",
        "HeadObject",
        "ListObjectsV2",
        "GetBucketLocation",
        "HeadBucket",
    ] {
        let hits = only(&seen, "s3", action);
        assert!(!hits.is_empty(), "no {action} among {seen:#?}");
        for s in hits {
            assert_eq!(s.region.as_deref(), Some(R));
            assert!(s.forwarded && !s.faulted, "{s:#?}");
            assert!(s.path.starts_with(&format!("/{b}")), "{s:#?}");
        }
    }
    assert_eq!(only(&seen, "s3", "HeadBucket").len(), 20);
    assert!(only(&seen, "s3", "HeadObject").iter().any(|s| s.status == 404));
    assert!(only(&seen, "s3", "GetObject").iter().all(|s| s.status == 200));
}

#[test]
fn sts_errors_have_their_code_and_times_counts_down() {
    let moto = Moto::shared();
    let fl = FaultLayer::start(&moto.url);
    let role = "arn:aws:iam::123456789012:role/emu-sts";
    fl.add(
        Rule::new("sts", Some("AssumeRole"))
            .times(1)
            .fault(Fault::error(403, "AccessDenied", "not you")),
    );
    block_on(async {
        let sts = aws::sts(&fl.url, R).await;
        let err = sts
            .assume_role()
            .role_arn(role)
            .role_session_name("s")
            .send()
            .await
            .expect_err("injected AccessDenied");
        assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
        assert_eq!(err.message(), Some("not you"));
        sts.assume_role()
            .role_arn(role)
            .role_session_name("s")
            .send()
            .await
            .expect("the rule was used up: pass through");

        // Throttling is retryable: two faults, then the SDK's third attempt gets through.
        fl.clear_requests();
        fl.add(
            Rule::new("sts", Some("AssumeRole"))
                .times(2)
                .fault(Fault::error(400, "Throttling", "Rate exceeded")),
        );
        let ok = sts
            .assume_role()
            .role_arn(role)
            .role_session_name("s")
            .send()
            .await
            .expect("retried past two Throttling answers");
        assert!(ok.credentials().is_some());
    });
    let tries = fl.requests_for("sts", "AssumeRole");
    let flags: Vec<(bool, bool, u16)> = tries.iter().map(|s| (s.faulted, s.forwarded, s.status)).collect();
    assert_eq!(
        flags,
        vec![(true, false, 400), (true, false, 400), (false, true, 200)],
        "{tries:#?}"
    );

    // A rule for another action or region does not fire.
    fl.clear();
    fl.add(Rule::new("sts", Some("GetCallerIdentity")).fault(Fault::error(403, "AccessDenied", "x")));
    fl.add(
        Rule::new("sts", Some("AssumeRole"))
            .region("eu-west-1")
            .fault(Fault::error(403, "AccessDenied", "x")),
    );
    block_on(async {
        let sts = aws::sts(&fl.url, R).await;
        sts.assume_role()
            .role_arn(role)
            .role_session_name("s")
            .send()
            .await
            .expect("not matched");
        let eu = aws::sts(&fl.url, "eu-west-1").await;
        let err = eu
            .assume_role()
            .role_arn(role)
            .role_session_name("s")
            .send()
            .await
            .expect_err("matched");
        assert_eq!(err.code(), Some("AccessDenied"));
    });
}

#[test]
fn s3_errors_have_their_code() {
    let moto = Moto::shared();
    let fl = FaultLayer::start(&moto.url);
    let b = bucket("err");
    block_on(async {
        let s3 = aws::s3(&fl.url, R).await;
        s3.create_bucket().bucket(&b).send().await.expect("CreateBucket");
        s3.put_object()
            .bucket(&b)
            .key("k")
            .body(ByteStream::from_static(b"v"))
            .send()
            .await
            .expect("PutObject");

        fl.add(
            Rule::new("s3", Some("GetObject"))
                .path_contains(&b)
                .times(1)
                .fault(Fault::error(403, "AccessDenied", "Access Denied")),
        );
        let err = s3.get_object().bucket(&b).key("k").send().await.expect_err("403");
        assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
        s3.get_object()
            .bucket(&b)
            .key("k")
            .send()
            .await
            .expect("passes through after one");

        fl.add(
            Rule::new("s3", Some("GetObject"))
                .times(1)
                .fault(Fault::s3_wrong_region(301, "eu-west-1")),
        );
        let err = s3.get_object().bucket(&b).key("k").send().await.expect_err("301");
        assert_eq!(err.code(), Some("PermanentRedirect"), "{err:?}");
        let raw = err.raw_response().expect("raw response");
        assert_eq!(raw.status().as_u16(), 301);
        assert_eq!(raw.headers().get("x-amz-bucket-region"), Some("eu-west-1"));

        // HEAD answers carry no body, so (as against real S3) only the header tells.
        fl.add(
            Rule::new("s3", Some("HeadBucket"))
                .times(1)
                .fault(Fault::s3_wrong_region(301, "eu-west-1")),
        );
        let err = s3.head_bucket().bucket(&b).send().await.expect_err("301 on HEAD");
        let raw = err.raw_response().expect("raw response");
        assert_eq!(raw.status().as_u16(), 301);
        assert_eq!(raw.headers().get("x-amz-bucket-region"), Some("eu-west-1"));
        assert!(
            raw.body().bytes().is_none_or(|b| b.is_empty()),
            "HEAD error with a body"
        );

        fl.add(
            Rule::new("s3", Some("GetObject"))
                .times(1)
                .fault(Fault::s3_wrong_region(400, "ap-south-1")),
        );
        let err = s3.get_object().bucket(&b).key("k").send().await.expect_err("400");
        assert_eq!(err.code(), Some("AuthorizationHeaderMalformed"), "{err:?}");
        let body = err
            .raw_response()
            .and_then(|r| r.body().bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned());
        assert!(
            body.as_deref()
                .is_some_and(|b| b.contains("<Region>ap-south-1</Region>")),
            "{body:?}"
        );

        // SlowDown is retryable: more faults than attempts exhausts the SDK's retries.
        fl.add(Rule::new("s3", Some("GetObject")).times(10).fault(Fault::error(
            503,
            "SlowDown",
            "Please reduce your request rate.",
        )));
        let err = s3.get_object().bucket(&b).key("k").send().await.expect_err("503");
        assert_eq!(err.code(), Some("SlowDown"), "{err:?}");
        fl.clear();
        s3.get_object().bucket(&b).key("k").send().await.expect("cleared");
    });
    let slow: Vec<_> = fl
        .requests_for("s3", "GetObject")
        .into_iter()
        .filter(|s| s.status == 503)
        .collect();
    assert_eq!(slow.len(), 3, "the SDK's standard mode makes three attempts: {slow:#?}");
    assert!(slow.iter().all(|s| s.faulted && !s.forwarded));
}

#[test]
fn kms_errors_have_their_code() {
    let moto = Moto::shared();
    let fl = FaultLayer::start(&moto.url);
    block_on(async {
        let kms = aws::kms(&fl.url, R).await;
        let key = kms.create_key().send().await.expect("CreateKey");
        let key_id = key.key_metadata().expect("metadata").key_id().to_string();
        fl.add(Rule::new("kms", Some("GenerateDataKey")).times(1).fault(Fault::error(
            400,
            "AccessDeniedException",
            "denied",
        )));
        let err = kms
            .generate_data_key()
            .key_id(&key_id)
            .number_of_bytes(32)
            .send()
            .await
            .expect_err("injected");
        assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");
        let ok = kms
            .generate_data_key()
            .key_id(&key_id)
            .number_of_bytes(32)
            .encryption_context("ws", "w1")
            .send()
            .await
            .expect("pass through");
        assert_eq!(ok.plaintext().map(|p| p.as_ref().len()), Some(32));

        let seen = fl.requests_for("kms", "GenerateDataKey");
        assert_eq!(seen.len(), 2, "{seen:#?}");
        assert!(seen[0].faulted && !seen[0].forwarded);
        assert_eq!(seen[1].params.get("KeyId"), Some(&key_id));
        assert_eq!(
            seen[1].params.get("EncryptionContext").map(String::as_str),
            Some(r#"{"ws":"w1"}"#)
        );
        assert_eq!(seen[1].region.as_deref(), Some(R));
    });
}

#[test]
fn delay_holds_a_request_then_passes_it_on() {
    let moto = Moto::shared();
    let fl = FaultLayer::start(&moto.url);
    let b = bucket("delay");
    block_on(async {
        let s3 = aws::s3(&fl.url, R).await;
        s3.create_bucket().bucket(&b).send().await.expect("CreateBucket");

        fl.add(
            Rule::new("s3", Some("HeadBucket"))
                .times(1)
                .fault(Fault::delay(Duration::from_millis(200))),
        );
        s3.head_bucket()
            .bucket(&b)
            .send()
            .await
            .expect("a delayed call still succeeds");
        let held = fl.requests_for("s3", "HeadBucket");
        assert_eq!(held.len(), 1);
        assert!(
            held[0].faulted && held[0].forwarded && held[0].status == 200,
            "{held:#?}"
        );

        // A client that gives up sooner sees a timeout, not an answer.
        let conf = aws_sdk_s3::config::Builder::from(&aws::sdk_config(&fl.url, R).await)
            .force_path_style(true)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(300))
                    .build(),
            )
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        let impatient = aws_sdk_s3::Client::from_conf(conf);
        fl.add(
            Rule::new("s3", Some("HeadBucket"))
                .times(1)
                .fault(Fault::delay(Duration::from_secs(5))),
        );
        let err = impatient.head_bucket().bucket(&b).send().await.expect_err("timed out");
        assert!(matches!(err, aws_sdk_s3::error::SdkError::TimeoutError(_)), "{err:?}");
        impatient
            .head_bucket()
            .bucket(&b)
            .send()
            .await
            .expect("the rule is used up");
    });
}

#[test]
fn requests_record_what_moto_ignores() {
    let moto = Moto::shared();
    let fl = FaultLayer::start(&moto.url);
    let policy =
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
            .to_string();
    block_on(async {
        let sts = aws::sts(&fl.url, "eu-central-1").await;
        sts.assume_role()
            .role_arn("arn:aws:iam::123456789012:role/emu-rec")
            .role_session_name("sess-1")
            .external_id("ext-42")
            .policy(&policy)
            .source_identity("ws:w1:agent:a1")
            .tags(
                aws_sdk_sts::types::Tag::builder()
                    .key("workspace")
                    .value("w 1")
                    .build()
                    .expect("tag"),
            )
            .duration_seconds(900)
            .send()
            .await
            .expect("AssumeRole");
    });
    let seen = fl.requests_for("sts", "AssumeRole");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let s = &seen[0];
    let p = |k: &str| s.params.get(k).map(String::as_str);
    assert_eq!(p("ExternalId"), Some("ext-42"));
    assert_eq!(p("Policy"), Some(policy.as_str()));
    assert_eq!(p("Tags.member.1.Key"), Some("workspace"));
    assert_eq!(p("Tags.member.1.Value"), Some("w 1"));
    assert_eq!(p("SourceIdentity"), Some("ws:w1:agent:a1"));
    assert_eq!(p("DurationSeconds"), Some("900"));
    assert_eq!(p("RoleSessionName"), Some("sess-1"));
    assert_eq!(s.region.as_deref(), Some("eu-central-1"));
    assert_eq!(
        (s.method.as_str(), s.status, s.forwarded, s.faulted),
        ("POST", 200, true, false)
    );
    assert!(s
        .headers
        .get("authorization")
        .is_some_and(|a| a.contains("/eu-central-1/sts/aws4_request")));
}

// ----- web identity ------------------------------------------------------------------

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn mint(d: &Deployment, key: &str, body: Value) -> (String, u64) {
    let (s, v) = d.api().post("/v1/tokens", Some(key), &body);
    assert_eq!(s, 200, "mint: {v}");
    (
        v["token"].as_str().expect("token").to_string(),
        v["expires_at"].as_u64().expect("expires_at"),
    )
}

/// A JWT with the deployment's issuer and the right audience, but signed by a key the
/// issuer never published (and no `kid`).
fn foreign_token(issuer: &str, aud: &str) -> String {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
    assert_eq!(kp.public_key().as_ref().len(), 65);
    let header = B64URL.encode(json!({"alg": "ES256", "typ": "JWT"}).to_string());
    let t = now();
    let claims = json!({"iss": issuer, "aud": aud, "sub": "ws:x:agent:y", "iat": t, "exp": t + 300});
    let input = format!("{header}.{}", B64URL.encode(claims.to_string()));
    let sig = kp.sign(&rng, input.as_bytes()).expect("sign");
    format!("{input}.{}", B64URL.encode(sig.as_ref()))
}

/// The same token with one claim changed and the original signature kept.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64URL.decode(parts[1]).expect("b64")).expect("json");
    claims["sub"] = json!("ws:someone-else:agent:evil");
    format!("{}.{}.{}", parts[0], B64URL.encode(claims.to_string()), parts[2])
}

fn assume_web(
    fl: &FaultLayer,
    token: &str,
) -> Result<
    aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput,
    (Option<String>, Option<String>),
> {
    block_on(async {
        aws::sts(&fl.url, R)
            .await
            .assume_role_with_web_identity()
            .role_arn("arn:aws:iam::123456789012:role/emu-web")
            .role_session_name("agent")
            .web_identity_token(token)
            .send()
            .await
            .map_err(|e| (e.code().map(str::to_string), e.message().map(str::to_string)))
    })
}

#[track_caller]
fn refused(fl: &FaultLayer, token: &str, why: &str) {
    fl.clear_requests();
    let (code, message) = assume_web(fl, token).expect_err(why);
    assert_eq!(code.as_deref(), Some("InvalidIdentityToken"), "{why}: {message:?}");
    let message = message.unwrap_or_default().to_lowercase();
    assert!(message.contains(why), "expected {why:?} in {message:?}");
    let seen = fl.requests_for("sts", "AssumeRoleWithWebIdentity");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert!(
        seen[0].faulted && !seen[0].forwarded && seen[0].status == 400,
        "reached moto: {seen:#?}"
    );
}

#[test]
fn web_identity_tokens_are_checked_before_moto() {
    let moto = Moto::shared();
    let fl = FaultLayer::start(&moto.url);
    let d = Deployment::start();
    let t = d.new_tenant();
    let (token, expires_at) = mint(&d, &t.agent_key, json!({}));

    // Without a trusted issuer the layer is transparent (moto takes anything).
    assume_web(&fl, "not-a-jwt").expect("moto itself checks nothing");

    fl.trust_issuer(&d.url, "sts.amazonaws.com");
    let ok = assume_web(&fl, &token).expect("a genuine token is accepted");
    assert!(ok.credentials().is_some_and(|c| !c.access_key_id().is_empty()));
    let seen = fl.requests_for("sts", "AssumeRoleWithWebIdentity");
    let last = seen.last().expect("recorded");
    assert!(last.forwarded && !last.faulted && last.status == 200, "{last:#?}");
    assert_eq!(last.region, None, "AssumeRoleWithWebIdentity is unsigned");
    assert_eq!(last.params.get("WebIdentityToken"), Some(&token));

    refused(&fl, &tampered(&token), "signature");
    refused(&fl, &foreign_token(&d.url, "sts.amazonaws.com"), "signature");
    refused(
        &fl,
        &foreign_token("http://127.0.0.1:9/elsewhere", "sts.amazonaws.com"),
        "no openidconnect provider",
    );
    refused(&fl, "not-a-jwt", "not a valid jwt");
    let none = format!(
        "{}.{}.",
        B64URL.encode(r#"{"alg":"none"}"#),
        B64URL.encode(json!({"iss": d.url, "aud": "sts.amazonaws.com", "exp": now() + 300}).to_string())
    );
    refused(&fl, &none, "not a valid jwt");

    // The real token, but the relying party expects another audience.
    fl.trust_issuer(&d.url, "other.example.com");
    refused(&fl, &token, "audience");
    fl.trust_issuer(&d.url, "sts.amazonaws.com");

    // The real token once its expiry has passed (the check's clock moved ahead rather
    // than waiting), and accepted again with the clock back.
    fl.set_clock_offset((expires_at - now()) as i64 + 1);
    refused(&fl, &token, "expired");
    fl.set_clock_offset(0);
    assume_web(&fl, &token).expect("the same token within its lifetime");
}

// ----- IAM auth ----------------------------------------------------------------------

#[test]
fn iam_auth_denials_reach_the_sdk_with_their_code() {
    let moto = Moto::start();
    let fl = FaultLayer::start(&moto.url);
    let role_arn = block_on(async {
        let iam = aws::iam(&moto.url).await;
        iam.create_user().user_name("caller").send().await.expect("CreateUser");
        iam.put_user_policy()
            .user_name("caller")
            .policy_name("assume")
            .policy_document(json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}).to_string())
            .send()
            .await
            .expect("PutUserPolicy");
        let trust = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:user/caller"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "right-id"}}
        }]});
        let role = iam
            .create_role()
            .role_name("needs-external-id")
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .expect("CreateRole");
        let role_arn = role.role().expect("role").arn().to_string();
        let key = iam
            .create_access_key()
            .user_name("caller")
            .send()
            .await
            .expect("CreateAccessKey");
        let key = key.access_key().expect("key").clone();
        moto.enable_iam_auth();

        let creds =
            aws_sdk_sts::config::Credentials::new(key.access_key_id(), key.secret_access_key(), None, None, "caller");
        let via_proxy = aws_sdk_sts::Client::new(&aws::sdk_config_with(&fl.url, R, creds.clone()).await);
        let direct = aws_sdk_sts::Client::new(&aws::sdk_config_with(&moto.url, R, creds).await);

        // moto's own answer: the code is lost to the SDK; hence the rewrite.
        let err = direct
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name("s")
            .external_id("wrong-id")
            .send()
            .await
            .expect_err("wrong external id, directly");
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403), "{err:?}");
        assert_eq!(err.code(), None, "moto's EC2-style error shape: {err:?}");

        let err = via_proxy
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name("s")
            .external_id("wrong-id")
            .send()
            .await
            .expect_err("wrong external id");
        assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
        assert!(err.message().is_some_and(|m| m.contains("not authorized")), "{err:?}");
        via_proxy
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name("s")
            .external_id("right-id")
            .send()
            .await
            .expect("right external id");
        role_arn
    });
    let seen = fl.requests_for("sts", "AssumeRole");
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!((seen[0].status, seen[0].forwarded, seen[0].faulted), (403, true, false));
    assert_eq!(seen[0].params.get("RoleArn"), Some(&role_arn));
    assert_eq!(seen[1].status, 200);
}

// ----- robustness and lifecycle -----------------------------------------------------

#[test]
fn malformed_requests_do_not_break_the_proxy() {
    use std::io::{Read, Write};
    let moto = Moto::shared();
    let fl = FaultLayer::start(&moto.url);
    let raw = |bytes: &[u8]| {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", fl.port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let _ = c.write_all(bytes);
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let garbage = raw(b"\x00\x01 not http at all\r\n\r\n");
    assert!(garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let odd = [
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=/,\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\nConnection: close\r\n\r\nAction=%%",
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.Nope\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{[}",
        "GET /%ff%fe/%00?location&x=%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    for req in odd {
        let resp = raw(req.as_bytes());
        assert!(resp.starts_with("HTTP/1.1 "), "no HTTP answer to {req:?}: {resp}");
    }
    block_on(async {
        aws::sts(&fl.url, R)
            .await
            .get_caller_identity()
            .send()
            .await
            .expect("still serving");
    });
}

#[test]
fn a_private_server_stops_when_dropped() {
    let moto = Moto::start();
    let port = moto.port;
    assert_ne!(port, Moto::shared().port);
    drop(moto);
    sealgate_tests::wait_until("the dropped moto to stop listening", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

const HELPER_ENV: &str = "SEALGATE_EMULATOR_EXIT_HELPER";

/// Run in a child process by the next test: starts the shared server and exits
/// without any destructor running, as every test process does.
#[test]
#[ignore = "helper for moto_does_not_outlive_its_test_process"]
fn helper_start_shared_moto_and_exit() {
    // Only as the child of that test: under `--include-ignored` exiting here would end
    // the whole test run early.
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    println!("MOTO_PORT={}", Moto::shared().port);
    std::process::exit(0);
}

#[test]
fn moto_does_not_outlive_its_test_process() {
    let out = std::process::Command::new(std::env::current_exe().expect("test exe"))
        .args([
            "--ignored",
            "--exact",
            "helper_start_shared_moto_and_exit",
            "--nocapture",
        ])
        .env(HELPER_ENV, "1")
        .output()
        .expect("run the helper");
    let text = String::from_utf8_lossy(&out.stdout);
    let port: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("MOTO_PORT="))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "helper printed no port: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    sealgate_tests::wait_until("the orphaned moto to stop", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}
