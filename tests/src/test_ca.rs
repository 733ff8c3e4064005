//! A throwaway certificate authority for the test servers that speak HTTPS (the
//! webhook receivers, the KMS double): an rcgen CA, one server certificate it issued
//! for the names given, the CA written as PEM into a temporary directory for the
//! process under test to trust, and the rustls server configuration.

use std::path::PathBuf;
use std::sync::Arc;

pub struct TestCa {
    /// Holds `pem_path` for as long as the CA lives.
    pub dir: tempfile::TempDir,
    pub pem_path: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// A CA named `name` and a server certificate for `sans`, the CA saved as `file`.
    pub fn new(name: &str, sans: Vec<String>, file: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, name);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("server key");
        let leaf = CertificateParams::new(sans)
            .expect("server params")
            .signed_by(&leaf_key, &issuer)
            .expect("server certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let pem_path = dir.path().join(file);
        std::fs::write(&pem_path, ca_cert.pem()).expect("write the CA");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .expect("server TLS config");
        TestCa {
            dir,
            pem_path,
            server: Arc::new(server),
        }
    }
}
