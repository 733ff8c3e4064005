//! `sealgate-verify`: what an auditor runs to check a sealgate deployment without
//! trusting its host.
//!
//! The host is an untrusted relay: it stores the audit log and serves it, but only the
//! enclave signs checkpoints. This crate re-derives every claim from the signed
//! checkpoint and the served bytes, using the exact hashing, proof, note and leaf code
//! the enclave uses ([`sealgate_shared`]), so the two can never disagree on a format.
//!
//! - [`fetch`]: the [`fetch::LogSource`] trait (one method per audit endpoint) and its
//!   HTTP implementation;
//! - [`jwt`]: reading the `jti` of a token to prove;
//! - [`log`]: the log verification, pure over a `LogSource`;
//! - [`nitro`]: attestation documents: decoding, trust roots, chain and COSE signature;
//! - [`attest`]: the attestation check, pure over an [`fetch::AttestSource`];
//! - [`all`]: attestation, then the log under the attested key, then history;
//! - [`monitor`]: the same checks round after round, remembering what it verified;
//! - [`report`]: failure classes, exit codes, text and JSON output.
//!
//! The crate deliberately depends on no async runtime and no cloud SDK: an auditor
//! should be able to read all of what it runs.
#![forbid(unsafe_code)]

pub mod all;
pub mod attest;
pub mod fetch;
pub mod jwt;
pub mod log;
pub mod monitor;
pub mod nitro;
pub mod report;
