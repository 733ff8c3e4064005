//! The OIDC issuer: discovery, JWKS, and token minting.

use super::JsonBody;
use crate::auth::Principal;
use crate::db::PendingLeaf;
use crate::error::ApiError;
use crate::expect_reply;
use crate::App;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sealgate_shared::ids;
use sealgate_shared::protocol::{MintRequest, Op, Reply};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Default token lifetime when the request names none.
pub const DEFAULT_TTL_SECONDS: u64 = 300;

pub async fn discovery(State(app): State<Arc<App>>) -> Json<Value> {
    let iss = &app.ledger.config.issuer;
    Json(json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "https://aws.amazon.com/tags"],
    }))
}

pub async fn jwks(State(app): State<Arc<App>>) -> Result<impl IntoResponse, ApiError> {
    let hello = app
        .ledger
        .hello()
        .ok_or_else(|| ApiError::EnclaveUnavailable("the enclave has not been reached yet".into()))?;
    let keys: Vec<Value> = hello
        .token_keys
        .iter()
        // A rotated-out key is served until its last token has expired.
        .filter(|k| k.retire_at.is_none_or(|t| t > crate::now_secs()))
        .map(|k| json!({ "kty": "EC", "crv": "P-256", "x": B64URL.encode(&k.x), "y": B64URL.encode(&k.y), "kid": k.kid, "alg": "ES256", "use": "sig" }))
        .collect();
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(json!({ "keys": keys })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    audience: Option<String>,
    ttl_seconds: Option<u64>,
    task_id: Option<String>,
}

pub async fn mint(
    State(app): State<Arc<App>>,
    who: Principal,
    JsonBody(body): JsonBody<MintBody>,
) -> Result<Json<Value>, ApiError> {
    let (ws, agent) = who.require_agent()?;
    app.limits.rates.check_key(crate::limits::Class::Mint, &who.key_id)?;
    let cfg = &app.ledger.config;
    let audience = body.audience.unwrap_or_else(|| cfg.audiences[0].clone());
    if !cfg.audiences.contains(&audience) {
        return Err(ApiError::bad_code(
            "INVALID_AUDIENCE",
            format!("audience {audience:?} is not allowed; allowed: {:?}", cfg.audiences),
        ));
    }
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if ttl < cfg.ttl_min_seconds || ttl > cfg.ttl_max_seconds {
        return Err(ApiError::bad_code(
            "INVALID_TTL",
            format!(
                "ttl_seconds must be within [{}, {}]",
                cfg.ttl_min_seconds, cfg.ttl_max_seconds
            ),
        ));
    }
    if let Some(t) = &body.task_id {
        if !ids::valid_id(t) {
            return Err(ApiError::bad_code(
                "INVALID_TASK_ID",
                "task_id must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}",
            ));
        }
    }
    let req = MintRequest {
        workspace: ws.into(),
        agent: agent.into(),
        task: body.task_id,
        audience,
        ttl_seconds: ttl,
        caller: who.key_id.clone(),
        // Never a grant: that subject namespace belongs to the grant path alone.
        grant: None,
    };
    let minted = mint_token(&app, req).await?;
    Ok(Json(
        json!({ "token": minted.token, "jti": minted.jti, "expires_at": minted.exp, "log_index": minted.log_index }),
    ))
}

/// A token minted by the enclave and durably logged.
pub struct MintedToken {
    pub token: String,
    pub jti: String,
    pub exp: u64,
    pub log_index: u64,
}

/// Mints a token in the enclave and releases it only once its leaf is durable and
/// contiguous, and, with witnesses configured, once the enclave has released it under a
/// checkpoint a quorum of them cosigned. Also used by AWS grants for
/// `AssumeRoleWithWebIdentity`; callers have already validated audience and TTL against
/// the configuration.
pub async fn mint_token(app: &App, req: MintRequest) -> Result<MintedToken, ApiError> {
    if let Some(m) = app.ledger.integrity_failure() {
        return Err(ApiError::LogIntegrity(m));
    }
    let reply = app.ledger.call(Op::MintToken(req)).await?;
    let minted = expect_reply!(reply, Reply::Minted, "MintToken")?;
    let index = minted.leaf.index;
    let wait = minted.token.is_none().then(|| app.ledger.hold_for_release(index));
    // Durable (and contiguous) before released.
    let leaf = PendingLeaf::new(minted.leaf, Some(minted.jti.clone()));
    app.ledger.commit(vec![leaf], None).await?;
    let token = match (minted.token, wait) {
        (Some(token), _) => token,
        (None, Some(wait)) => wait.token().await?,
        (None, None) => return Err(ApiError::Internal("the enclave held a token without a wait".into())),
    };
    app.metrics
        .tokens_issued
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(MintedToken {
        token,
        jti: minted.jti,
        exp: minted.exp,
        log_index: index,
    })
}
