//! The Nitro Security Module, behind a trait.
//!
//! Everything the enclave proves about itself goes through an attestation document: a
//! COSE_Sign1 whose payload names the measured image (PCRs), carries the caller's
//! `user_data` / `nonce` / `public_key`, and is signed by a key whose certificate chains
//! to the AWS Nitro root. The enclave only ever asks for such documents, so one trait
//! method covers it, and two providers implement it:
//!
//! - [`nitro::NitroNsm`], the real `/dev/nsm` device. [`Nsm::attest`] takes exactly the
//!   three optional fields of `aws_nitro_enclaves_nsm_api::api::Request::Attestation
//!   { user_data, nonce, public_key }` and returns the bytes of `Response::Attestation
//!   { document }` unchanged, so that provider is a thin wrapper around one ioctl;
//! - [`sim::SimNsm`], a simulator for running outside an enclave. It issues documents with
//!   the same layout as AWS, signed under a persistent local root that an auditor pins
//!   instead of the AWS root, so the same verifier code runs in both modes.
//!
//! Limits are checked here ([`check_attest_limits`]) rather than in each provider so the
//! simulator refuses exactly what the hardware would refuse: code that works against the
//! simulator must not start failing once it runs on a real enclave.

pub mod nitro;
pub mod sim;

use std::fmt;

/// Length of one PCR under SHA-384, the only digest Nitro uses.
pub const PCR_LEN: usize = 48;
/// Largest `user_data` the NSM accepts in an attestation request.
pub const MAX_USER_DATA_LEN: usize = 512;
/// Largest `nonce` the NSM accepts in an attestation request.
pub const MAX_NONCE_LEN: usize = 512;
/// Largest `public_key` the NSM accepts in an attestation request.
pub const MAX_PUBLIC_KEY_LEN: usize = 1024;

/// A source of attestation documents.
///
/// `Send + Sync` because one provider is shared by every connection the enclave serves.
pub trait Nsm: Send + Sync {
    /// An attestation document: untagged COSE_Sign1 bytes, as /dev/nsm returns them.
    ///
    /// `None` and `Some(&[])` differ: `None` becomes CBOR `null` in the document, an empty
    /// slice an empty byte string, as on the hardware.
    fn attest(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, NsmError>;

    /// PCR0 of the running image (48 bytes).
    fn pcr0(&self) -> Vec<u8>;
}

/// Why the NSM could not produce what was asked.
#[derive(Debug, thiserror::Error)]
pub enum NsmError {
    /// Reading or writing the device or the provider's files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, including the path involved.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Key or certificate material could not be generated, loaded or used, including
    /// persisted material that turned out to be corrupt.
    #[error("NSM crypto error: {0}")]
    Crypto(String),
    /// The request itself is not acceptable (for example a field over the NSM's limits).
    #[error("invalid NSM request: {0}")]
    InvalidInput(String),
    /// The device answered the request with `Response::Error` (its error code, e.g.
    /// `InternalError`, `InputTooLarge`).
    #[error("the NSM refused {request}: {code}")]
    Refused {
        /// The request kind, e.g. `Attestation`.
        request: &'static str,
        /// The device's error code.
        code: String,
    },
    /// The device answered with a response of another kind or an impossible shape.
    #[error("the NSM answered {request} with {got}")]
    UnexpectedResponse {
        /// The request kind, e.g. `DescribePCR`.
        request: &'static str,
        /// What came back (the kind only, never its payload).
        got: String,
    },
}

impl NsmError {
    pub(crate) fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        NsmError::Io {
            context: context.to_string(),
            source,
        }
    }
}

/// Refuses an attestation request whose fields exceed what the hardware NSM accepts
/// (`user_data` ≤ 512, `nonce` ≤ 512, `public_key` ≤ 1024 bytes).
pub fn check_attest_limits(
    user_data: Option<&[u8]>,
    nonce: Option<&[u8]>,
    public_key: Option<&[u8]>,
) -> Result<(), NsmError> {
    let fields = [
        ("user_data", user_data, MAX_USER_DATA_LEN),
        ("nonce", nonce, MAX_NONCE_LEN),
        ("public_key", public_key, MAX_PUBLIC_KEY_LEN),
    ];
    for (name, value, max) in fields {
        if let Some(value) = value {
            if value.len() > max {
                return Err(NsmError::InvalidInput(format!(
                    "{name} is {} bytes; the NSM accepts at most {max}",
                    value.len()
                )));
            }
        }
    }
    Ok(())
}
