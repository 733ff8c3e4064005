//! The real Nitro Security Module: `/dev/nsm`, through `aws-nitro-enclaves-nsm-api`.
//!
//! The device takes one CBOR request per `ioctl` and answers one CBOR response; the
//! crate's `driver::nsm_process_request` does the encoding and the `ioctl` (its only
//! `unsafe`), so this crate stays `forbid(unsafe_code)`. This provider adds nothing to
//! what the hardware says: an attestation document's bytes are returned exactly as the
//! device produced them, and every answer other than the one asked for becomes a typed
//! [`NsmError`].
//!
//! The device is opened with `std::fs` rather than the crate's `driver::nsm_init`:
//! `nsm_init` returns `-1` and drops the reason (missing device, permissions), while
//! operators starting the enclave outside an enclave need to be told exactly that. The
//! open `File` is the descriptor `nsm_init` would have returned, and dropping it closes
//! the device as `driver::nsm_exit` would.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver::nsm_process_request;
use serde_bytes::ByteBuf;

use super::{check_attest_limits, Nsm, NsmError, PCR_LEN};

/// Where the Nitro hypervisor exposes the NSM inside an enclave.
pub const DEVICE: &str = "/dev/nsm";

/// The NSM device of the enclave this process runs in.
pub struct NitroNsm {
    path: PathBuf,
    /// The kernel driver serialises requests itself; the lock keeps one request in flight
    /// per descriptor so a response can never be read by the wrong caller, whatever the
    /// driver version. Attestations are rare (boot, unseal, auditors), so it costs nothing.
    device: Mutex<File>,
    /// Read once at open: PCR0 (the enclave image) is locked before the image starts.
    pcr0: [u8; PCR_LEN],
}

impl fmt::Debug for NitroNsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NitroNsm")
            .field("path", &self.path)
            .field("pcr0", &hex::encode(self.pcr0))
            .finish_non_exhaustive()
    }
}

impl NitroNsm {
    /// Opens `/dev/nsm` and reads PCR0.
    pub fn open() -> Result<NitroNsm, NsmError> {
        Self::open_path(Path::new(DEVICE))
    }

    /// Opens the NSM device at `path` (only tests pass anything but [`DEVICE`]).
    pub fn open_path(path: &Path) -> Result<NitroNsm, NsmError> {
        let mut nsm = Self::from_file(open_device(path)?, path);
        nsm.pcr0 = nsm.describe_pcr(0)?;
        Ok(nsm)
    }

    /// Wraps an open device without talking to it (PCR0 left zero).
    fn from_file(file: File, path: &Path) -> NitroNsm {
        NitroNsm {
            path: path.to_path_buf(),
            device: Mutex::new(file),
            pcr0: [0; PCR_LEN],
        }
    }

    fn process(&self, request: Request) -> Response {
        let device = self.device.lock().unwrap_or_else(PoisonError::into_inner);
        nsm_process_request(device.as_raw_fd(), request)
    }

    /// The value of PCR `index`, which must be a SHA-384 digest.
    pub fn describe_pcr(&self, index: u16) -> Result<[u8; PCR_LEN], NsmError> {
        pcr_value(self.process(Request::DescribePCR { index }))
    }
}

/// Opens the device read-write (as `driver::nsm_init` does), naming the cause on failure.
fn open_device(path: &Path) -> Result<File, NsmError> {
    OpenOptions::new().read(true).write(true).open(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (not inside a Nitro Enclave? outside one, run with --nsm sim)"
        } else {
            ""
        };
        NsmError::io(
            format_args!("opening the Nitro Security Module {}{hint}", path.display()),
            e,
        )
    })
}

impl Nsm for NitroNsm {
    fn attest(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, NsmError> {
        // Same limits, same order as the simulator: a request the simulator refuses is
        // refused here before it reaches the device, with the same error.
        check_attest_limits(user_data, nonce, public_key)?;
        let bytes = |v: Option<&[u8]>| v.map(|b| ByteBuf::from(b.to_vec()));
        attestation_document(self.process(Request::Attestation {
            user_data: bytes(user_data),
            nonce: bytes(nonce),
            public_key: bytes(public_key),
        }))
    }

    fn pcr0(&self) -> Vec<u8> {
        self.pcr0.to_vec()
    }
}

/// The document of a `Response::Attestation`, unchanged; any other response is an error.
fn attestation_document(response: Response) -> Result<Vec<u8>, NsmError> {
    match response {
        Response::Attestation { document } if !document.is_empty() => Ok(document),
        Response::Attestation { .. } => Err(NsmError::UnexpectedResponse {
            request: "Attestation",
            got: "an empty attestation document".into(),
        }),
        other => Err(unexpected("Attestation", other)),
    }
}

/// The 48-byte value of a `Response::DescribePCR`; any other response is an error.
fn pcr_value(response: Response) -> Result<[u8; PCR_LEN], NsmError> {
    match response {
        Response::DescribePCR { data, .. } => {
            <[u8; PCR_LEN]>::try_from(data.as_slice()).map_err(|_| NsmError::UnexpectedResponse {
                request: "DescribePCR",
                got: format!("a {}-byte PCR (expected {PCR_LEN}: SHA-384)", data.len()),
            })
        }
        other => Err(unexpected("DescribePCR", other)),
    }
}

/// An error for a response that is not the one `request` calls for. Names the response
/// kind only: its payload (random bytes, documents) has no place in an error message.
fn unexpected(request: &'static str, response: Response) -> NsmError {
    let got = match response {
        Response::Error(code) => {
            return NsmError::Refused {
                request,
                code: format!("{code:?}"),
            }
        }
        Response::DescribePCR { .. } => "DescribePCR",
        Response::ExtendPCR { .. } => "ExtendPCR",
        Response::LockPCR => "LockPCR",
        Response::LockPCRs => "LockPCRs",
        Response::DescribeNSM { .. } => "DescribeNSM",
        Response::Attestation { .. } => "Attestation",
        Response::GetRandom { .. } => "GetRandom",
        _ => "an unknown response",
    };
    NsmError::UnexpectedResponse {
        request,
        got: got.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_nitro_enclaves_nsm_api::api::ErrorCode;

    #[test]
    fn a_missing_device_is_a_clear_error() {
        let path = Path::new("/nonexistent/sealgate-test/nsm");
        let err = NitroNsm::open_path(path).expect_err("no device there");
        match &err {
            NsmError::Io { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/sealgate-test/nsm"), "{msg}");
        assert!(msg.contains("--nsm sim"), "{msg}");
    }

    #[test]
    fn opening_dev_nsm_off_nitro_fails_cleanly() {
        if Path::new(DEVICE).exists() {
            println!("SKIP: {DEVICE} exists (running inside a Nitro Enclave?)");
            return;
        }
        let err = NitroNsm::open().expect_err("no /dev/nsm on this machine");
        assert!(matches!(err, NsmError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(DEVICE), "{err}");
    }

    /// `/dev/null` opens but refuses the NSM ioctl (ENOTTY), which the driver reports as
    /// `Response::Error(InternalError)`: exercises the real driver path end to end.
    #[test]
    fn a_device_that_refuses_the_ioctl_is_a_typed_error() {
        let err = NitroNsm::open_path(Path::new("/dev/null")).expect_err("not an NSM");
        assert!(
            matches!(&err, NsmError::Refused { request: "DescribePCR", code } if code == "InternalError"),
            "{err:?}"
        );

        let file = open_device(Path::new("/dev/null")).expect("open /dev/null");
        let nsm = NitroNsm::from_file(file, Path::new("/dev/null"));
        let err = nsm.attest(Some(b"u"), Some(b"n"), None).expect_err("not an NSM");
        assert!(
            matches!(
                &err,
                NsmError::Refused {
                    request: "Attestation",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn limits_are_checked_before_the_device() {
        let file = open_device(Path::new("/dev/null")).expect("open /dev/null");
        let nsm = NitroNsm::from_file(file, Path::new("/dev/null"));
        for (u, n, k) in [
            (Some(vec![0u8; 513]), None, None),
            (None, Some(vec![0u8; 513]), None),
            (None, None, Some(vec![0u8; 1025])),
        ] {
            let err = nsm
                .attest(u.as_deref(), n.as_deref(), k.as_deref())
                .expect_err("over limit");
            assert!(matches!(err, NsmError::InvalidInput(_)), "{err:?}");
        }
    }

    #[test]
    fn responses_map_to_documents_or_typed_errors() {
        let doc = vec![0x84, 1, 2, 3];
        assert_eq!(
            attestation_document(Response::Attestation { document: doc.clone() }).expect("document"),
            doc
        );
        assert!(matches!(
            attestation_document(Response::Attestation { document: vec![] }),
            Err(NsmError::UnexpectedResponse { .. })
        ));
        let err = attestation_document(Response::Error(ErrorCode::InputTooLarge)).unwrap_err();
        assert!(
            matches!(&err, NsmError::Refused { code, .. } if code == "InputTooLarge"),
            "{err:?}"
        );
        let err = attestation_document(Response::GetRandom { random: vec![7; 32] }).unwrap_err();
        assert!(
            matches!(&err, NsmError::UnexpectedResponse { got, .. } if got == "GetRandom"),
            "{err:?}"
        );
        // The payload never reaches the message.
        assert!(!err.to_string().contains("7, 7"), "{err}");

        let pcr = [5u8; PCR_LEN];
        assert_eq!(
            pcr_value(Response::DescribePCR {
                lock: true,
                data: pcr.to_vec()
            })
            .expect("pcr"),
            pcr
        );
        assert!(matches!(
            pcr_value(Response::DescribePCR {
                lock: true,
                data: vec![0; 32]
            }),
            Err(NsmError::UnexpectedResponse { .. })
        ));
        assert!(matches!(
            pcr_value(Response::Error(ErrorCode::InvalidIndex)),
            Err(NsmError::Refused { .. })
        ));
        assert!(matches!(
            pcr_value(Response::LockPCR),
            Err(NsmError::UnexpectedResponse { .. })
        ));
    }
}
