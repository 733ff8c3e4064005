//! HTTPS webhook receivers for the e2e tests. Webhooks are `https://` only, so a test
//! receiver needs a certificate the host trusts: one test CA per test process (rcgen),
//! handed to the host with `--webhook-ca-file`, and a server certificate for
//! `127.0.0.1` and `localhost`. The receivers are plain threads speaking just enough
//! HTTP/1.1 over rustls to record what arrived.
//!
//! The host must also run with `--allow-private-webhooks`, since these receivers
//! listen on loopback; [`host_args`] gives both flags.

use crate::test_ca::TestCa;
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

static CA: LazyLock<TestCa> = LazyLock::new(|| {
    TestCa::new(
        "sealgate webhook test CA",
        vec!["127.0.0.1".to_string(), "localhost".to_string()],
        "webhook-ca.pem",
    )
});

/// `sealgate serve` flags for a host that delivers to these receivers.
pub fn host_args() -> Vec<String> {
    vec![
        "--allow-private-webhooks".into(),
        "--webhook-ca-file".into(),
        CA.pem_path.display().to_string(),
    ]
}

/// The test CA's PEM file (for a host that trusts it but keeps the address rule).
pub fn ca_file() -> PathBuf {
    CA.pem_path.clone()
}

/// One request as a receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: BTreeMap<String, String>,
    pub path: String,
    pub body: Vec<u8>,
}

/// An HTTPS receiver on 127.0.0.1 that answers each request with the next status of
/// `script` (then 200) and records it. Returns `https://127.0.0.1:PORT`.
pub fn https_receiver(script: Vec<u16>) -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("https://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let script = Arc::new(Mutex::new(script.into_iter()));
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (record, script) = (record.clone(), script.clone());
            std::thread::spawn(move || {
                let _ = serve_one(tcp, &record, &script);
            });
        }
    });
    (base, seen)
}

fn serve_one(
    tcp: std::net::TcpStream,
    record: &Mutex<Vec<Delivery>>,
    script: &Mutex<std::vec::IntoIter<u16>>,
) -> std::io::Result<()> {
    let conn = rustls::ServerConnection::new(CA.server.clone()).map_err(std::io::Error::other)?;
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    let crate::http1::Request {
        path, headers, body, ..
    } = crate::http1::read_request(&mut reader)?;
    let status = {
        let mut seen = record.lock().expect("lock");
        seen.push(Delivery { headers, path, body });
        script.lock().expect("lock").next().unwrap_or(200)
    };
    let stream = reader.get_mut();
    write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// A receiver that accepts connections and never says a word (not even TLS): a dead
/// webhook. Returns its URL and how many connections it has accepted.
pub fn silent_receiver() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("https://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for tcp in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    (base, accepted)
}
