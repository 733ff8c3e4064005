//! A simulated Nitro Security Module, for running the enclave outside a Nitro Enclave.
//!
//! The simulator issues attestation documents that are byte-for-byte shaped like the ones
//! `/dev/nsm` returns (see [`SimNsm::attest_at`] for the layout), so an auditor verifies
//! them with the same code as real ones; only the trust anchor differs. Instead of the
//! AWS Nitro root, the chain ends at a root generated on first use and kept in
//! `STATE_DIR/sim-nsm/`; `root.pem` there is what an auditor passes as `--sim-root`.
//!
//! The certificate hierarchy mirrors AWS's, shortened to one intermediate:
//!
//! ```text
//! root (persisted, ~30 years)  →  intermediate (per process, 7 days)  →  leaf (3 hours)
//! ```
//!
//! A simulated document proves nothing about the hardware — whoever holds `root.key` can
//! sign anything — and that is why the root is generated per deployment and pinned
//! explicitly rather than shipped: it at least lets an auditor see that the same
//! simulator instance signed every document they were shown.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING};
use base64::Engine as _;
use ciborium::Value;
use coset::{iana, CborSerializable, CoseSign1Builder, HeaderBuilder};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, PKCS_ECDSA_P384_SHA384,
};
use sha2::{Digest, Sha384};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA384;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{check_attest_limits, Nsm, NsmError, PCR_LEN};

/// Subdirectory of the state directory holding the simulator's root.
pub const STATE_SUBDIR: &str = "sim-nsm";
/// The root CA's private key: PKCS#8 DER, mode 0600.
pub const ROOT_KEY_FILE: &str = "root.key";
/// The root CA's self-signed certificate, DER.
pub const ROOT_CERT_FILE: &str = "root.der";
/// The same certificate as PEM, for auditors (`--sim-root`). Derived from
/// [`ROOT_CERT_FILE`] and rewritten whenever it is missing or differs.
pub const ROOT_PEM_FILE: &str = "root.pem";

/// What PCR1 (the kernel and boot ramdisk on Nitro) is the SHA-384 of.
pub const PCR1_INPUT: &[u8] = b"sealgate-sim kernel";
/// What PCR2 (the user applications on Nitro) is the SHA-384 of.
pub const PCR2_INPUT: &[u8] = b"sealgate-sim application";

/// AWS documents carry PCRs 0 to 15, unset ones as zeros.
const PCR_COUNT: usize = 16;

const ORGANIZATION: &str = "sealgate (simulated AWS Nitro Enclaves)";
const ROOT_COMMON_NAME: &str = "sealgate simulated Nitro root";
const INTERMEDIATE_COMMON_NAME: &str = "sealgate simulated Nitro intermediate";

/// About 30 years (10,957 days: 30 × 365 plus leap days), like the AWS Nitro root. The
/// root is pinned by auditors, so it must outlive any deployment.
const ROOT_LIFETIME: Duration = Duration::from_secs(10_957 * 24 * 3600);
/// The intermediate's key never leaves memory; a week covers many leaves, and a process
/// that runs longer simply gets a new one (see [`SimNsm::attest_at`]).
const INTERMEDIATE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// AWS's document-signing certificates live about three hours. Keeping the same lifetime
/// means verifiers are exercised against short-lived leaves and renewal in development,
/// not first in production.
const LEAF_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// A leaf with less validity than this left is replaced before signing, so a document is
/// never handed out with a certificate about to expire under the verifier's feet.
const RENEW_MARGIN: Duration = Duration::from_secs(10 * 60);

/// 9999-12-31T23:59:59Z, the last instant X.509 (GeneralizedTime) can express.
const MAX_X509_UNIX_SECS: u64 = 253_402_300_799;

/// A simulated NSM: signs AWS-shaped attestation documents under a persistent local root.
pub struct SimNsm {
    dir: PathBuf,
    root_der: Vec<u8>,
    /// Only the subject name, key identifier method and key usages of these are used:
    /// they are what rcgen needs to issue certificates as the persisted root.
    root_params: CertificateParams,
    root_key: KeyPair,
    pcrs: [[u8; PCR_LEN]; PCR_COUNT],
    module_id: String,
    rng: SystemRandom,
    chain: Mutex<Chain>,
}

/// The part of the hierarchy that is re-issued while the simulator runs.
struct Chain {
    intermediate: Intermediate,
    /// Behind an `Arc` so `attest` can sign with it after releasing the lock.
    leaf: Arc<Leaf>,
}

struct Intermediate {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
    not_before: u64,
    not_after: u64,
}

struct Leaf {
    der: Vec<u8>,
    /// Root first, then the intermediate: AWS orders the bundle root → … → leaf's issuer.
    cabundle: Vec<Vec<u8>>,
    signer: EcdsaKeyPair,
    not_before: u64,
    not_after: u64,
}

impl Intermediate {
    /// Whether a leaf issued at `now` with the full [`LEAF_LIFETIME`] fits inside this
    /// intermediate's validity (a leaf must never outlive its issuer).
    fn can_issue_at(&self, now: u64) -> bool {
        self.not_before <= now && now.saturating_add(LEAF_LIFETIME.as_secs()) <= self.not_after
    }
}

impl Leaf {
    /// Whether documents signed at `now` may use this leaf: valid now and for at least
    /// [`RENEW_MARGIN`] more. `now < not_before` happens when the clock steps back.
    fn usable_at(&self, now: u64) -> bool {
        self.not_before <= now && now.saturating_add(RENEW_MARGIN.as_secs()) < self.not_after
    }
}

impl fmt::Debug for SimNsm {
    /// Names the instance without revealing any key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNsm")
            .field("dir", &self.dir)
            .field("module_id", &self.module_id)
            .field("pcr0", &hex::encode(self.pcrs[0]))
            .finish_non_exhaustive()
    }
}

impl SimNsm {
    /// Opens the simulator whose root lives in `state_dir/sim-nsm/`, creating the root on
    /// first use, and measures `image` as PCR0.
    ///
    /// `image` should be the running enclave binary (`std::env::current_exe()`). On Nitro,
    /// PCR0 measures the enclave image file, so the closest honest analogue here is the
    /// binary that is actually executing: an auditor recomputes it with `sha384sum` on the
    /// binary they built reproducibly and compares. (Real PCR0 is an extend of the EIF's
    /// sections, not a plain file hash; the simulator uses the plain hash so the check
    /// needs no tooling.)
    ///
    /// The root is never regenerated once it exists: auditors pin it, so a missing or
    /// corrupt root file is an error to be fixed by hand, not silently replaced. Each open
    /// issues a fresh intermediate and leaf, whose keys exist only in memory.
    pub fn open(state_dir: &Path, image: &Path) -> Result<SimNsm, NsmError> {
        let pcr0 = sha384_file(image)?;
        let rng = SystemRandom::new();
        let dir = state_dir.join(STATE_SUBDIR);
        let (root_key, root_der) = load_or_create_root(state_dir, &dir, &rng)?;
        write_root_pem(&dir, &root_der, &rng)?;

        let root_params = root_params();
        let now = unix_secs(SystemTime::now())?;
        let intermediate = issue_intermediate(&root_params, &root_key, now)?;
        // rcgen names the issuer from `root_params`; if the persisted certificate has a
        // different subject (written by another version), the chain would not link up.
        check_issued_by(&intermediate.der, &root_der)?;

        let mut pcrs = [[0u8; PCR_LEN]; PCR_COUNT];
        pcrs[0] = pcr0;
        pcrs[1] = sha384(PCR1_INPUT);
        pcrs[2] = sha384(PCR2_INPUT);
        let module_id = format!("sealgate-sim-{}", hex::encode(&pcr0[..4]));

        let leaf = issue_leaf(&intermediate, &root_der, &module_id, now)?;
        Ok(SimNsm {
            dir,
            root_der,
            root_params,
            root_key,
            pcrs,
            module_id,
            rng,
            chain: Mutex::new(Chain {
                intermediate,
                leaf: Arc::new(leaf),
            }),
        })
    }

    /// The simulated root certificate (DER): the trust anchor for this simulator's
    /// documents, in place of the AWS Nitro root.
    pub fn root_certificate_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The simulated root certificate as PEM, the contents of `root.pem`.
    pub fn root_certificate_pem(&self) -> String {
        pem_certificate(&self.root_der)
    }

    /// Where `root.pem` is, to tell operators what to hand auditors.
    pub fn root_pem_path(&self) -> PathBuf {
        self.dir.join(ROOT_PEM_FILE)
    }

    /// The `module_id` this simulator puts in its documents.
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// PCR `index` (0 to 15), 48 bytes.
    pub fn pcr(&self, index: usize) -> Option<&[u8]> {
        self.pcrs.get(index).map(|p| p.as_slice())
    }

    /// [`Nsm::attest`] as if the clock read `now`; `attest` passes the current time.
    ///
    /// Exposed so the renewal of short-lived certificates can be exercised without
    /// waiting hours. The document is the AWS layout exactly: an untagged COSE_Sign1
    /// `[protected: bstr({1: -35 (ES384)}), unprotected: {}, payload: bstr, signature:
    /// bstr(r‖s, 96 bytes)]`, signed by the leaf over the `"Signature1"` Sig_structure
    /// with empty external AAD, and a payload map with text keys in this order:
    /// `module_id`, `digest` (`"SHA384"`), `timestamp` (ms since the epoch), `pcrs`
    /// (uint → 48-byte bstr, 0 to 15), `certificate` (leaf DER), `cabundle` (root first,
    /// then the intermediate), `public_key`, `user_data`, `nonce` (bstr or null).
    pub fn attest_at(
        &self,
        now: SystemTime,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, NsmError> {
        check_attest_limits(user_data, nonce, public_key)?;
        let since_epoch = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| NsmError::Crypto("the clock reads before 1970".into()))?;
        let timestamp_ms =
            u64::try_from(since_epoch.as_millis()).map_err(|_| NsmError::Crypto("the clock is out of range".into()))?;
        let leaf = self.leaf_at(since_epoch.as_secs())?;

        let payload = self.payload(&leaf, timestamp_ms, user_data, nonce, public_key)?;
        let protected = HeaderBuilder::new().algorithm(iana::Algorithm::ES384).build();
        let sign1 = CoseSign1Builder::new()
            .protected(protected)
            .payload(payload)
            .try_create_signature(b"", |tbs| {
                leaf.signer
                    .sign(&self.rng, tbs)
                    .map(|sig| sig.as_ref().to_vec())
                    .map_err(|_| NsmError::Crypto("signing the attestation document".into()))
            })?
            .build();
        sign1
            .to_vec()
            .map_err(|e| NsmError::Crypto(format!("encoding COSE_Sign1: {e}")))
    }

    /// The leaf to sign with at `now`, re-issuing it (and the intermediate, if the new
    /// leaf would outlive it) when it is not valid for at least [`RENEW_MARGIN`] more.
    fn leaf_at(&self, now: u64) -> Result<Arc<Leaf>, NsmError> {
        // Every update below replaces whole fields, so a panic elsewhere while the lock
        // was held cannot have left the chain half-updated: poisoning is safe to ignore.
        let mut chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
        if !chain.leaf.usable_at(now) {
            if !chain.intermediate.can_issue_at(now) {
                chain.intermediate = issue_intermediate(&self.root_params, &self.root_key, now)?;
            }
            let leaf = issue_leaf(&chain.intermediate, &self.root_der, &self.module_id, now)?;
            chain.leaf = Arc::new(leaf);
        }
        Ok(Arc::clone(&chain.leaf))
    }

    fn payload(
        &self,
        leaf: &Leaf,
        timestamp_ms: u64,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, NsmError> {
        let text = |s: &str| Value::Text(s.to_owned());
        let bytes_or_null = |v: Option<&[u8]>| v.map_or(Value::Null, |b| Value::Bytes(b.to_vec()));
        let pcrs = self
            .pcrs
            .iter()
            .zip(0u64..)
            .map(|(pcr, index)| (Value::Integer(index.into()), Value::Bytes(pcr.to_vec())))
            .collect();
        let cabundle = leaf.cabundle.iter().map(|der| Value::Bytes(der.clone())).collect();
        // A `Value::Map` is encoded in the order given, which is how the key order
        // matches AWS's (it is not CBOR's canonical order).
        let document = Value::Map(vec![
            (text("module_id"), text(&self.module_id)),
            (text("digest"), text("SHA384")),
            (text("timestamp"), Value::Integer(timestamp_ms.into())),
            (text("pcrs"), Value::Map(pcrs)),
            (text("certificate"), Value::Bytes(leaf.der.clone())),
            (text("cabundle"), Value::Array(cabundle)),
            (text("public_key"), bytes_or_null(public_key)),
            (text("user_data"), bytes_or_null(user_data)),
            (text("nonce"), bytes_or_null(nonce)),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&document, &mut out)
            .map_err(|e| NsmError::Crypto(format!("encoding the attestation payload: {e}")))?;
        Ok(out)
    }
}

impl Nsm for SimNsm {
    fn attest(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, NsmError> {
        self.attest_at(SystemTime::now(), user_data, nonce, public_key)
    }

    fn pcr0(&self) -> Vec<u8> {
        self.pcrs[0].to_vec()
    }
}

fn crypto(what: &str) -> impl FnOnce(rcgen::Error) -> NsmError + '_ {
    move |e| NsmError::Crypto(format!("{what}: {e}"))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The root's issuing parameters. Deterministic: on later opens they must describe the
/// persisted certificate exactly (checked by [`check_issued_by`]).
fn root_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(ROOT_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn generate_key(what: &str) -> Result<KeyPair, NsmError> {
    KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(crypto(what))
}

/// `now + lifetime`, refusing clocks so far off that X.509 cannot express the result.
fn deadline(now: u64, lifetime: Duration) -> Result<u64, NsmError> {
    now.checked_add(lifetime.as_secs())
        .filter(|t| *t <= MAX_X509_UNIX_SECS)
        .ok_or_else(|| {
            NsmError::Crypto(format!(
                "the clock ({now} s after 1970) is beyond what a certificate can express"
            ))
        })
}

fn set_validity(params: &mut CertificateParams, not_before: u64, not_after: u64) {
    // rcgen takes `time::OffsetDateTime`; adding to its epoch avoids depending on `time`.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
}

fn issue_intermediate(root_params: &CertificateParams, root_key: &KeyPair, now: u64) -> Result<Intermediate, NsmError> {
    let root = Issuer::from_params(root_params, root_key);
    let key = generate_key("generating the intermediate key")?;
    let not_after = deadline(now, INTERMEDIATE_LIFETIME)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(INTERMEDIATE_COMMON_NAME);
    // pathlen 0: it signs only leaves.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, not_after);
    let cert = params
        .signed_by(&key, &root)
        .map_err(crypto("issuing the intermediate certificate"))?;
    Ok(Intermediate {
        der: cert.der().to_vec(),
        params,
        key,
        not_before: now,
        not_after,
    })
}

fn issue_leaf(intermediate: &Intermediate, root_der: &[u8], module_id: &str, now: u64) -> Result<Leaf, NsmError> {
    let issuer = Issuer::from_params(&intermediate.params, &intermediate.key);
    let key = generate_key("generating the document signing key")?;
    let not_after = deadline(now, LEAF_LIFETIME)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(module_id);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, not_after);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(crypto("issuing the document signing certificate"))?;
    // COSE wants the fixed-width r‖s signature, which rcgen's key does not produce.
    let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, key.serialized_der())
        .map_err(|e| NsmError::Crypto(format!("loading the document signing key: {e}")))?;
    Ok(Leaf {
        der: cert.der().to_vec(),
        cabundle: vec![root_der.to_vec(), intermediate.der.clone()],
        signer,
        not_before: now,
        not_after,
    })
}

/// Parses a whole DER certificate: bytes after it are an error, not ignored.
fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((trailing, _)) => Err(format!("{} trailing bytes after the certificate", trailing.len())),
        Err(e) => Err(format!("not a DER X.509 certificate: {e}")),
    }
}

/// Fails unless `child_der`'s issuer name is `parent_der`'s subject name.
fn check_issued_by(child_der: &[u8], parent_der: &[u8]) -> Result<(), NsmError> {
    let child =
        parse_certificate(child_der).map_err(|e| NsmError::Crypto(format!("parsing an issued certificate: {e}")))?;
    let parent =
        parse_certificate(parent_der).map_err(|e| NsmError::Crypto(format!("parsing the root certificate: {e}")))?;
    // Compared as encoded, like the names in a certificate chain are matched.
    if child.issuer().as_raw() != parent.subject().as_raw() {
        return Err(NsmError::Crypto(format!(
            "the persisted root certificate's subject is not the simulator's root name \
             ({ROOT_COMMON_NAME:?}); was {ROOT_CERT_FILE} written by another program?"
        )));
    }
    Ok(())
}

fn unix_secs(t: SystemTime) -> Result<u64, NsmError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| NsmError::Crypto("the clock reads before 1970".into()))
}

fn sha384(data: &[u8]) -> [u8; PCR_LEN] {
    let mut out = [0u8; PCR_LEN];
    out.copy_from_slice(&Sha384::digest(data));
    out
}

/// SHA-384 of a file's bytes, read in a stream (the enclave binary can be large).
fn sha384_file(path: &Path) -> Result<[u8; PCR_LEN], NsmError> {
    let mut file = fs::File::open(path)
        .map_err(|e| NsmError::io(format_args!("opening the enclave image {}", path.display()), e))?;
    let mut hasher = Sha384::new();
    io::copy(&mut file, &mut hasher)
        .map_err(|e| NsmError::io(format_args!("reading the enclave image {}", path.display()), e))?;
    let mut out = [0u8; PCR_LEN];
    out.copy_from_slice(&hasher.finalize());
    Ok(out)
}

fn exists(path: &Path) -> Result<bool, NsmError> {
    path.try_exists()
        .map_err(|e| NsmError::io(format_args!("checking {}", path.display()), e))
}

/// Loads the root from `dir`, or creates it if neither root file exists.
fn load_or_create_root(state_dir: &Path, dir: &Path, rng: &SystemRandom) -> Result<(KeyPair, Vec<u8>), NsmError> {
    let key_path = dir.join(ROOT_KEY_FILE);
    let cert_path = dir.join(ROOT_CERT_FILE);
    if exists(&key_path)? || exists(&cert_path)? {
        // Half a root (one file missing) fails in `load_root`: never regenerate.
        return load_root(dir);
    }
    create_root(state_dir, dir, rng)
}

/// Generates the root and publishes it atomically: all files are written to a staging
/// directory that is then renamed to `dir`, so a crash never leaves half a root behind,
/// and of two processes racing to create it, one wins and the other loads the winner's.
fn create_root(state_dir: &Path, dir: &Path, rng: &SystemRandom) -> Result<(KeyPair, Vec<u8>), NsmError> {
    let key = generate_key("generating the root key")?;
    let mut params = root_params();
    let now = unix_secs(SystemTime::now())?;
    set_validity(&mut params, now, deadline(now, ROOT_LIFETIME)?);
    let cert = params
        .self_signed(&key)
        .map_err(crypto("self-signing the root certificate"))?;
    let cert_der = cert.der().to_vec();

    fs::create_dir_all(state_dir)
        .map_err(|e| NsmError::io(format_args!("creating the state directory {}", state_dir.display()), e))?;
    let staging = state_dir.join(format!(".{STATE_SUBDIR}.staging.{}", random_hex(rng)?));
    let staged = stage_root(&staging, &key, &cert_der).and_then(|()| {
        fs::rename(&staging, dir)
            .map_err(|e| NsmError::io(format_args!("moving {} to {}", staging.display(), dir.display()), e))
    });
    match staged {
        Ok(()) => {
            sync_dir(state_dir)?;
            tracing::info!(
                dir = %dir.display(),
                "created a new simulated Nitro root; auditors pin {ROOT_PEM_FILE}"
            );
            Ok((key, cert_der))
        }
        Err(err) => {
            // Best effort: the staging directory holds nothing anyone else uses.
            let _ = fs::remove_dir_all(&staging);
            if exists(&dir.join(ROOT_KEY_FILE))? {
                // Another process created the root first; use theirs.
                load_root(dir)
            } else {
                Err(err)
            }
        }
    }
}

fn stage_root(staging: &Path, key: &KeyPair, cert_der: &[u8]) -> Result<(), NsmError> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(staging)
        .map_err(|e| NsmError::io(format_args!("creating {}", staging.display()), e))?;
    write_new_file(&staging.join(ROOT_KEY_FILE), key.serialized_der(), 0o600)?;
    write_new_file(&staging.join(ROOT_CERT_FILE), cert_der, 0o644)?;
    write_new_file(
        &staging.join(ROOT_PEM_FILE),
        pem_certificate(cert_der).as_bytes(),
        0o644,
    )?;
    sync_dir(staging)
}

/// Loads and cross-checks the persisted root. Anything unexpected is an error rather
/// than a reason to regenerate: auditors have pinned this root.
fn load_root(dir: &Path) -> Result<(KeyPair, Vec<u8>), NsmError> {
    let key_path = dir.join(ROOT_KEY_FILE);
    let cert_path = dir.join(ROOT_CERT_FILE);
    let key_der = read_file(&key_path)?;
    let cert_der = read_file(&cert_path)?;
    let corrupt = |path: &Path, why: &dyn fmt::Display| {
        NsmError::Crypto(format!(
            "{} is corrupt ({why}); the simulated root is pinned by auditors, so it is not \
             regenerated: restore the file, or remove {} to start over with a new root",
            path.display(),
            dir.display()
        ))
    };

    warn_if_key_readable_by_others(&key_path);
    // aws-lc-rs first: it insists on a P-384 PKCS#8 key, whatever the bytes are.
    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &key_der)
        .map_err(|e| corrupt(&key_path, &format_args!("not a P-384 PKCS#8 key: {e}")))?;
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&key_der.as_slice().into(), &PKCS_ECDSA_P384_SHA384)
        .map_err(|e| corrupt(&key_path, &e))?;

    let key_spki_der = key.subject_public_key_info();
    let (_, key_spki) = SubjectPublicKeyInfo::from_der(&key_spki_der)
        .map_err(|e| corrupt(&key_path, &format_args!("unreadable public key: {e}")))?;

    let cert = parse_certificate(&cert_der).map_err(|e| corrupt(&cert_path, &e))?;
    if cert.public_key().raw != key_spki.raw {
        return Err(corrupt(
            &cert_path,
            &format_args!("it does not certify the key in {ROOT_KEY_FILE}"),
        ));
    }
    if cert.issuer().as_raw() != cert.subject().as_raw() {
        return Err(corrupt(&cert_path, &"it is not self-signed"));
    }
    // ecdsa-with-SHA384 takes no parameters (RFC 5758); the curve is the key's, P-384.
    if cert.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA384 || cert.signature_algorithm.parameters.is_some()
    {
        return Err(corrupt(&cert_path, &"it is not signed with ECDSA P-384/SHA-384"));
    }
    cert.verify_signature(Some(&key_spki))
        .map_err(|_| corrupt(&cert_path, &"its signature does not verify"))?;
    Ok((key, cert_der))
}

#[cfg(unix)]
fn warn_if_key_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "the simulated root key is accessible to other users; it should be 0600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_key_readable_by_others(_path: &Path) {}

/// Keeps `root.pem` equal to the PEM of `root.der` (replacing it atomically if not): it
/// is derived data, and an auditor fetching a stale one would pin the wrong root.
fn write_root_pem(dir: &Path, root_der: &[u8], rng: &SystemRandom) -> Result<(), NsmError> {
    let path = dir.join(ROOT_PEM_FILE);
    let pem = pem_certificate(root_der);
    match fs::read(&path) {
        Ok(existing) if existing == pem.as_bytes() => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(NsmError::io(format_args!("reading {}", path.display()), e)),
    }
    let tmp = dir.join(format!(".{ROOT_PEM_FILE}.{}", random_hex(rng)?));
    write_new_file(&tmp, pem.as_bytes(), 0o644)?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        NsmError::io(format_args!("replacing {}", path.display()), e)
    })?;
    sync_dir(dir)
}

fn read_file(path: &Path) -> Result<Vec<u8>, NsmError> {
    fs::read(path).map_err(|e| NsmError::io(format_args!("reading {}", path.display()), e))
}

/// Creates `path` (which must not exist) with `mode`, writes `bytes` and syncs them.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), NsmError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .map_err(|e| NsmError::io(format_args!("creating {}", path.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| NsmError::io(format_args!("writing {}", path.display()), e))
}

/// Makes a rename or file creation in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), NsmError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| NsmError::io(format_args!("syncing {}", dir.display()), e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn random_hex(rng: &SystemRandom) -> Result<String, NsmError> {
    let mut bytes = [0u8; 8];
    rng.fill(&mut bytes)
        .map_err(|_| NsmError::Crypto("the system random generator failed".into()))?;
    Ok(hex::encode(bytes))
}

fn pem_certificate(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        // Base64 is ASCII, so any byte index is a character boundary.
        let (line, tail) = rest.split_at(rest.len().min(64));
        pem.push_str(line);
        pem.push('\n');
        rest = tail;
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_der() -> Vec<u8> {
        let key = generate_key("test root key").expect("key");
        let mut params = root_params();
        set_validity(&mut params, 0, ROOT_LIFETIME.as_secs());
        params.self_signed(&key).expect("self-sign").der().to_vec()
    }

    #[test]
    fn parse_certificate_rejects_non_certificates_and_trailing_bytes() {
        assert!(parse_certificate(&[]).is_err());
        assert!(parse_certificate(&[0x30, 0x00]).is_err());
        assert!(parse_certificate(b"-----BEGIN CERTIFICATE-----").is_err());
        let mut der = root_der();
        assert!(parse_certificate(&der).is_ok());
        der.push(0);
        let err = parse_certificate(&der).expect_err("trailing byte accepted");
        assert!(err.contains("1 trailing bytes"), "{err}");
    }

    #[test]
    fn check_issued_by_compares_issuer_with_subject() {
        let root = root_der();
        let key = generate_key("test root key").expect("key");
        let intermediate = issue_intermediate(&root_params(), &key, 0).expect("intermediate");
        check_issued_by(&intermediate.der, &root).expect("same name");

        let mut other = root_params();
        other.distinguished_name = name("someone else");
        let intermediate = issue_intermediate(&other, &key, 0).expect("intermediate");
        let err = check_issued_by(&intermediate.der, &root).expect_err("other name");
        assert!(matches!(err, NsmError::Crypto(_)), "{err:?}");
        assert!(err.to_string().contains(ROOT_CERT_FILE), "{err}");
    }
}
