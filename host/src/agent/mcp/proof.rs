//! `audit_prove_token`: that a token is in sealgate's transparency log, checked here
//! with the log's own primitives (`sealgate_shared::merkle`, `note`) rather than
//! taken from the host's word.
//!
//! The holder reads its own leaf by presenting the token (`GET /v1/audit/tokens/{jti}`),
//! and the checks are: the leaf is a `token.issued` leaf for this `jti` whose
//! `token_sha256` is the SHA-256 of this very token (`leaf::token_issued_for`, as
//! `sealgate-verify` checks it); the served hash is the leaf's; the
//! checkpoint's signature verifies under the log's key; the checkpoint covers the
//! leaf's index; the inclusion proof leads from the leaf to the checkpoint's root.
//!
//! The log's key comes from `verifier_key` when the caller pins one (the attested key
//! `sealgate-verify attest` reports) and otherwise from the host (`/v1/audit/key`), in
//! which case the answer says so: a host that lies about its key is caught only by
//! pinning, or by `sealgate-verify all`.

use super::super::client::{Bearer, Sealgate};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sealgate_shared::leaf;
use sealgate_shared::merkle::{self, Hash};
use sealgate_shared::note::VerifierKey;
use serde_json::{json, Value};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a token was not proven; `retry` when waiting may fix it (the next checkpoint).
pub struct NotProven {
    pub reason: String,
    pub retry: bool,
}

fn no(reason: impl Into<String>) -> NotProven {
    NotProven {
        reason: reason.into(),
        retry: false,
    }
}

async fn get(api: &Sealgate, path: &str, bearer: Bearer<'_>) -> Result<Value, NotProven> {
    let a = api
        .call("GET", path, None, bearer, TIMEOUT)
        .await
        .map_err(|e| NotProven {
            reason: e.to_string(),
            retry: true,
        })?;
    if !a.ok() {
        return Err(NotProven {
            reason: format!("GET {path}: HTTP {} {}: {}", a.status, a.code(), a.message()),
            retry: a.status >= 500 || a.status == 429,
        });
    }
    Ok(a.body)
}

fn text(v: &Value, what: &str) -> Result<String, NotProven> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| no(format!("{what} is not text")))
}

fn hash_of(v: &Value, what: &str) -> Result<Hash, NotProven> {
    let raw = B64
        .decode(v.as_str().unwrap_or_default())
        .map_err(|e| no(format!("{what} is not base64: {e}")))?;
    merkle::to_hash(&raw).map_err(|e| no(format!("{what}: {e}")))
}

/// Proves `token` (whose `jti` is `jti`) is in the log; the facts checked, as JSON.
pub async fn prove(api: &Sealgate, jti: &str, token: &str, pinned: Option<&VerifierKey>) -> Result<Value, NotProven> {
    let record = get(api, &format!("/v1/audit/tokens/{jti}"), Bearer::Other(token)).await?;
    let index = record["index"]
        .as_u64()
        .ok_or_else(|| no("the token record has no index"))?;
    let bytes = B64
        .decode(record["leaf"].as_str().unwrap_or_default())
        .map_err(|e| no(format!("the leaf is not base64: {e}")))?;
    let leaf_hash = merkle::leaf_hash(&bytes);
    if hash_of(&record["hash"], "the leaf hash")? != leaf_hash {
        return Err(no("the served hash is not the hash of the served leaf"));
    }
    let issued = leaf::token_issued_for(&bytes, index, jti, token).map_err(|e| no(e.to_string()))?;

    let (vk, key_source) = match pinned {
        Some(k) => (k.clone(), "pinned by the caller"),
        None => {
            let served = text(&get(api, "/v1/audit/key", Bearer::Anonymous).await?, "/v1/audit/key")?;
            let k: VerifierKey = served
                .trim()
                .parse()
                .map_err(|e| no(format!("/v1/audit/key is not a verifier key: {e}")))?;
            (
                k,
                "served by the host (pin the attested key with verifier_key to not trust the host)",
            )
        }
    };
    let note = text(
        &get(api, "/v1/audit/checkpoint", Bearer::Anonymous).await?,
        "the checkpoint",
    )?;
    let cp = vk
        .open(&note)
        .map_err(|e| no(format!("the checkpoint's signature does not verify: {e}")))?;
    if index >= cp.size {
        return Err(NotProven {
            reason: format!(
                "the latest checkpoint (size {}) does not cover the token's leaf {index} yet",
                cp.size
            ),
            retry: true,
        });
    }
    let p = get(
        api,
        &format!("/v1/audit/proof/inclusion?index={index}&size={}", cp.size),
        Bearer::Anonymous,
    )
    .await?;
    let proof = p["proof"]
        .as_array()
        .ok_or_else(|| no("the inclusion proof is not a list"))?
        .iter()
        .map(|h| hash_of(h, "a proof hash"))
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_inclusion(index, cp.size, &leaf_hash, &proof, &cp.root)
        .map_err(|e| no(format!("the inclusion proof does not verify: {e}")))?;
    Ok(json!({
        "verified": true,
        "jti": jti,
        "sub": issued.sub,
        "aud": issued.aud,
        "exp": issued.exp,
        "index": index,
        "leaf_hash": B64.encode(leaf_hash),
        "checkpoint": { "origin": cp.origin, "size": cp.size, "root": B64.encode(cp.root) },
        "inclusion_proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "verifier_key": vk.to_string(),
        "verifier_key_source": key_source,
    }))
}

/// The `jti` claim of a compact JWT (read, not verified: the log check is the proof).
pub fn jti_of(token: &str) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims["jti"].as_str().map(str::to_string)
}
