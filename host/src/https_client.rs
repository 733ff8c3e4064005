//! The connector for the host's outgoing HTTP calls that trust the system's TLS roots:
//! submissions to witnesses and the agent commands' calls to a sealgate host. rustls
//! with aws-lc-rs, HTTP/1.1; plain http is allowed, and each caller decides when (a
//! loopback witness, a loopback simulator). Webhooks have their own connector, which
//! also pins the address it checked (`grants::webhook_net`).

use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::Arc;

pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A connector trusting the system's roots; the error says why TLS could not be set up.
pub fn connector() -> Result<Connector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build())
}
