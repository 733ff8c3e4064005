//! KMS sealing: receiving a KMS data key inside the enclave.
//!
//! In production the enclave's private keys are wrapped (AES-256-GCM) under a KMS data
//! key that only this enclave image can obtain. The flow is KMS's "recipient" mode:
//!
//! 1. The enclave generates an RSA-2048 [`RecipientKey`] in its own memory and puts the
//!    key's SubjectPublicKeyInfo into the attestation document's `public_key`.
//! 2. The enclave itself calls KMS `GenerateDataKey` (first boot) or `Decrypt` (restart)
//!    with `Recipient { AttestationDocument, KeyEncryptionAlgorithm: RSAES_OAEP_SHA_256 }`
//!    over TLS it terminates ([`client`]). KMS checks the document against the key
//!    policy and, instead of returning the plaintext, returns `CiphertextForRecipient`: a
//!    CMS EnvelopedData (RFC 5652) whose content-encryption key is RSA-OAEP-SHA256-
//!    encrypted to that public key.
//! 3. [`unwrap_enveloped_data`] recovers the 32-byte data key.
//!
//! The CMS parser must still refuse malformed, tampered or unexpected structures with a
//! typed error and never panic, whoever sent the bytes.
//!
//! Why the enclave makes the call: a CMS addressed to the recipient key proves only that
//! its bytes were addressed to this enclave, not that KMS produced them — anyone holding
//! the public key (it is in the attestation document) can build one. When the host
//! relayed KMS's answer it could therefore substitute a data key of its own (issue 11,
//! break 1). What authenticates the data key now is the TLS connection to KMS, under
//! roots compiled into the enclave; the host's old `Unseal` is refused.

pub mod client;
mod cms;
mod recipient;

pub use cms::{
    unwrap_enveloped_data, CmsError, RsaesOaepParams, AES256_CBC, DATA_KEY_LEN, ID_DATA, ID_ENVELOPED_DATA, ID_MGF1,
    ID_P_SPECIFIED, ID_RSAES_OAEP, ID_SHA256, MAX_INPUT_LEN,
};
pub use recipient::{RecipientError, RecipientKey};
