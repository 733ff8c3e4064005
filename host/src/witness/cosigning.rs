//! The log's side of witnessing: get each new checkpoint cosigned by a quorum of the
//! configured witnesses, so the enclave will release the tokens it covers.
//!
//! One round per checkpoint ([`Cosigning::cosign`]): the checkpoint goes to every
//! witness at once, each with a consistency proof from the size that witness last
//! recorded (learnt from its 409 the first time), and the round ends as soon as a
//! quorum of valid cosignature lines is in, so one slow or dead witness costs nothing
//! while the others answer. A witness whose previous submission is still in flight sits
//! the round out rather than pile up requests behind a black hole. Rounds are one per
//! ack interval (the acker batches), so witnessing adds latency, not work per token.
//!
//! Nothing a witness says is trusted here either: each line is verified against the
//! witness's configured key before it counts, and the enclave checks the quorum again.

use super::client::{Client, WitnessError};
use sealgate_shared::cosignature::CosignerKey;
use sealgate_shared::merkle::Hash;
use sealgate_shared::note::split_note;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// `--witness VKEY@URL`: a witness's verifier key and its submission prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessEndpoint {
    pub key: CosignerKey,
    pub url: String,
}

impl FromStr for WitnessEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // A vkey has no '@' after its name; the URL starts with its scheme.
        let at = s.find("@http://").or_else(|| s.find("@https://")).ok_or_else(|| {
            format!("{s:?}: expected VKEY@URL, e.g. witness.example/w1+1a2b3c4d+BAx…@https://witness.example")
        })?;
        let (vkey, url) = (&s[..at], &s[at + 1..]);
        let key: CosignerKey = vkey
            .parse()
            .map_err(|e| format!("{vkey:?} is not a cosignature/v1 verifier key: {e}"))?;
        let parsed = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() || parsed.host().is_none() {
            return Err(format!("{url:?}: a witness URL has a host and no userinfo"));
        }
        Ok(Self {
            key,
            url: url.to_string(),
        })
    }
}

impl fmt::Display for WitnessEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.key, self.url)
    }
}

/// Consistency proofs from the host's tree: `(old size, new size) → proof`.
pub type ProofSource = Arc<dyn Fn(u64, u64) -> Result<Vec<Hash>, String> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    #[error("{have} of {need} cosignatures ({})", .problems.join("; "))]
    NoQuorum {
        have: usize,
        need: usize,
        problems: Vec<String>,
    },
    #[error("malformed checkpoint: {0}")]
    Note(String),
}

/// What one witness last did, for `/readyz` and the round's bookkeeping.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WitnessStatus {
    pub name: String,
    pub url: String,
    /// The size the witness recorded for this log, as far as this host knows.
    pub size: Option<u64>,
    /// Unix seconds of its last cosignature.
    pub last_cosigned_at: Option<u64>,
    pub last_error: Option<String>,
    #[serde(skip)]
    busy: bool,
}

struct Remote {
    key: CosignerKey,
    client: Client,
    status: Mutex<WitnessStatus>,
}

impl Remote {
    fn status(&self) -> std::sync::MutexGuard<'_, WitnessStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the witness busy unless it already is.
    fn try_begin(&self) -> bool {
        let mut s = self.status();
        !std::mem::replace(&mut s.busy, true)
    }

    /// One submission, retried once from the size a 409 names.
    async fn submit(&self, note: &str, size: u64, proofs: &ProofSource) -> Result<Vec<String>, String> {
        let mut old = self.status().size.unwrap_or(0);
        for attempt in 0..2 {
            if old > size {
                return Err(format!(
                    "it recorded size {old} for this log, beyond this checkpoint's {size}: the log was rolled back"
                ));
            }
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                proofs(old, size)?
            };
            match self.client.add_checkpoint(old, &proof, note).await {
                Ok(lines) => {
                    self.status().size = Some(size);
                    return Ok(lines);
                }
                Err(WitnessError::Conflict(recorded)) if attempt == 0 => {
                    self.status().size = Some(recorded);
                    old = recorded;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the witness changed its recorded size twice in one round".into())
    }

    fn finish(&self, result: &Result<Vec<String>, String>) {
        let mut s = self.status();
        s.busy = false;
        match result {
            Ok(_) => {
                s.last_cosigned_at = Some(crate::now_secs());
                s.last_error = None;
            }
            Err(e) => s.last_error = Some(e.clone()),
        }
    }
}

/// The configured witnesses and the quorum the enclave requires of them.
pub struct Cosigning {
    witnesses: Vec<Arc<Remote>>,
    quorum: usize,
    /// Rounds that reached a quorum, and those that did not (`/metrics`).
    cosigned: AtomicU64,
    no_quorum: AtomicU64,
}

impl Cosigning {
    pub fn new(endpoints: &[WitnessEndpoint], quorum: usize) -> Result<Self, WitnessError> {
        let witnesses = endpoints
            .iter()
            .map(|e| {
                Ok(Arc::new(Remote {
                    key: e.key.clone(),
                    client: Client::new(&e.url)?,
                    status: Mutex::new(WitnessStatus {
                        name: e.key.name().to_string(),
                        url: e.url.clone(),
                        ..Default::default()
                    }),
                }))
            })
            .collect::<Result<Vec<_>, WitnessError>>()?;
        Ok(Self {
            witnesses,
            quorum,
            cosigned: AtomicU64::new(0),
            no_quorum: AtomicU64::new(0),
        })
    }

    /// The round counters in Prometheus text: rounds per token shows how well they batch.
    pub fn render(&self) -> String {
        format!(
            "# HELP sealgate_witness_rounds_total Witnessing rounds, by whether a quorum cosigned.\n\
             # TYPE sealgate_witness_rounds_total counter\n\
             sealgate_witness_rounds_total{{result=\"cosigned\"}} {}\n\
             sealgate_witness_rounds_total{{result=\"no_quorum\"}} {}\n",
            self.cosigned.load(Ordering::Relaxed),
            self.no_quorum.load(Ordering::Relaxed)
        )
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    pub fn statuses(&self) -> Vec<WitnessStatus> {
        self.witnesses.iter().map(|w| w.status().clone()).collect()
    }

    /// Submits the enclave-signed checkpoint `note` (at `size`) to every idle witness
    /// and returns it with a quorum of verified cosignature lines appended, as soon as
    /// there are that many. Submissions still running then finish in the background
    /// (their witness records the checkpoint all the same).
    pub async fn cosign(&self, note: &str, size: u64, proofs: ProofSource) -> Result<String, CosignError> {
        let (body, _) = split_note(note).map_err(|e| CosignError::Note(e.to_string()))?;
        let (tx, mut rx) = mpsc::channel(self.witnesses.len().max(1));
        let mut problems = Vec::new();
        for (i, w) in self.witnesses.iter().enumerate() {
            if !w.try_begin() {
                problems.push(format!("{}: its previous submission is still in flight", w.key.name()));
                continue;
            }
            let (w, tx, note, proofs) = (w.clone(), tx.clone(), note.to_string(), proofs.clone());
            tokio::spawn(async move {
                let result = w.submit(&note, size, &proofs).await;
                w.finish(&result);
                let _ = tx.send((i, result)).await;
            });
        }
        drop(tx);
        let mut lines: Vec<String> = Vec::new();
        while let Some((i, result)) = rx.recv().await {
            let w = &self.witnesses[i];
            match result {
                Ok(answer) => match answer.iter().find(|l| w.key.verify_line(body, l).is_ok()) {
                    Some(line) => lines.push(line.clone()),
                    None => {
                        let e = "its answer holds no valid cosignature by its configured key".to_string();
                        w.status().last_error = Some(e.clone());
                        problems.push(format!("{}: {e}", w.key.name()));
                    }
                },
                Err(e) => problems.push(format!("{}: {e}", w.key.name())),
            }
            if lines.len() >= self.quorum {
                let mut cosigned = note.to_string();
                for l in &lines {
                    cosigned.push_str(l);
                    cosigned.push('\n');
                }
                self.cosigned.fetch_add(1, Ordering::Relaxed);
                return Ok(cosigned);
            }
        }
        self.no_quorum.fetch_add(1, Ordering::Relaxed);
        Err(CosignError::NoQuorum {
            have: lines.len(),
            need: self.quorum,
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_shared::cosignature::Cosigner;

    const BODY: &str = "log.example/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    fn cosigner(name: &str, seed: u8) -> Cosigner {
        Cosigner::new(name, ed25519_dalek::SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    /// A witness on loopback that answers every submission with `line`.
    async fn answering(line: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/add-checkpoint",
            axum::routing::post(move || {
                let line = line.clone();
                async move { format!("{line}\n") }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// A witness's answer counts only if it verifies under that witness's configured
    /// key: a line under its name by another key (or another witness's line) does not.
    #[tokio::test]
    async fn only_lines_that_verify_under_the_configured_key_count() {
        let note = format!("{BODY}\n\u{2014} log.example/log AAAAAA==\n");
        let (w1, w2) = (cosigner("w1.example", 1), cosigner("w2.example", 2));
        let impostor = cosigner("w2.example", 9);
        let honest1 = answering(w1.cosign(BODY, 1_800_000_000).unwrap()).await;
        let lying2 = answering(impostor.cosign(BODY, 1_800_000_000).unwrap()).await;
        let honest2 = answering(w2.cosign(BODY, 1_800_000_000).unwrap()).await;
        let proofs: ProofSource = Arc::new(|_, _| Ok(Vec::new()));
        let endpoint = |w: &Cosigner, url: &str| WitnessEndpoint {
            key: w.verifier(),
            url: url.to_string(),
        };

        let lied_to = Cosigning::new(&[endpoint(&w1, &honest1), endpoint(&w2, &lying2)], 2).unwrap();
        match lied_to.cosign(&note, 3, proofs.clone()).await {
            Err(CosignError::NoQuorum {
                have: 1,
                need: 2,
                problems,
            }) => {
                assert!(
                    problems.iter().any(|p| p.contains("no valid cosignature")),
                    "{problems:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        let honest = Cosigning::new(&[endpoint(&w1, &honest1), endpoint(&w2, &honest2)], 2).unwrap();
        let cosigned = honest.cosign(&note, 3, proofs).await.unwrap();
        let keys = [w1.verifier(), w2.verifier()];
        assert_eq!(
            sealgate_shared::cosignature::verify_quorum(&cosigned, &keys, 2)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn endpoints_parse_and_print_back() {
        let key = sealgate_shared::cosignature::Cosigner::new(
            "witness.example/w1",
            ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
        )
        .unwrap()
        .verifier();
        let s = format!("{key}@http://127.0.0.1:7380");
        let e: WitnessEndpoint = s.parse().unwrap();
        assert_eq!(e.key, key);
        assert_eq!(e.url, "http://127.0.0.1:7380");
        assert_eq!(e.to_string(), s);
        for bad in [
            key.to_string(),
            format!("{key}@ftp://x"),
            format!("{key}@https://user@x"),
            "nokey@https://x".to_string(),
        ] {
            assert!(bad.parse::<WitnessEndpoint>().is_err(), "{bad}");
        }
    }
}
