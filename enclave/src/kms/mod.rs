//! KMS sealing: receiving a KMS data key inside the enclave.
//!
//! In production the enclave's private keys are wrapped (AES-256-GCM) under a KMS data
//! key that only this enclave image can obtain. The flow is KMS's "recipient" mode:
//!
//! 1. The enclave generates an RSA-2048 [`RecipientKey`] in its own memory and puts the
//!    key's SubjectPublicKeyInfo into the attestation document's `public_key`.
//! 2. The host calls KMS `GenerateDataKey` (first boot) or `Decrypt` (restart) with
//!    `Recipient { AttestationDocument, KeyEncryptionAlgorithm: RSAES_OAEP_SHA_256 }`.
//!    KMS checks the document against the key policy and, instead of returning the
//!    plaintext, returns `CiphertextForRecipient`: a CMS EnvelopedData (RFC 5652) whose
//!    content-encryption key is RSA-OAEP-SHA256-encrypted to that public key.
//! 3. The host forwards those bytes to the enclave, which calls
//!    [`unwrap_enveloped_data`] to recover the 32-byte data key.
//!
//! The host never sees the data key, but everything it forwards is untrusted input: the
//! CMS parser must refuse malformed, tampered or unexpected structures with a typed error
//! and must never panic.
//!
//! What this does **not** give: authentication of KMS. Anyone holding the public key (the
//! host included) can build a well-formed EnvelopedData for it, so a successful unwrap
//! proves only that the bytes were addressed to this enclave, not that KMS produced them.
//! Callers must tie the data key to something the host cannot forge (for example, checking
//! it against previously sealed material) before trusting it for new seals.

mod cms;
mod recipient;

pub use cms::{
    unwrap_enveloped_data, CmsError, RsaesOaepParams, AES256_CBC, DATA_KEY_LEN, ID_DATA, ID_ENVELOPED_DATA, ID_MGF1,
    ID_P_SPECIFIED, ID_RSAES_OAEP, ID_SHA256, MAX_INPUT_LEN,
};
pub use recipient::{RecipientError, RecipientKey};
