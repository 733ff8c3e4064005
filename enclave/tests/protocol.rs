//! The enclave's request handling, through the real server on a Unix socket:
//! arbitrary bytes and arbitrary operations never panic it, a malformed frame closes
//! only its own connection, and every security rule has a negative test.

use proptest::prelude::*;
use sealgate_enclave::enclave::Enclave;
use sealgate_enclave::keys::SealedStore;
use sealgate_enclave::kms::client::{KmsClient, KmsProxy};
use sealgate_enclave::nsm::sim::SimNsm;
use sealgate_enclave::server::Listener;
use sealgate_shared::addr::Addr;
use sealgate_shared::connection::read_frame;
use sealgate_shared::frame;
use sealgate_shared::merkle::{self, proof::TreeStore};
use sealgate_shared::note::VerifierKey;
use sealgate_shared::protocol::*;
use serde_bytes::ByteBuf;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn config() -> EnclaveConfig {
    EnclaveConfig {
        issuer: "https://sealgate.example.com".into(),
        audiences: vec!["sts.amazonaws.com".into(), "other".into()],
        ttl_min_seconds: 60,
        ttl_max_seconds: 3600,
        log_origin: "sealgate.example.com/log".into(),
        witnesses: vec![],
        witness_quorum: 0,
    }
}

fn boot(state: &Path) -> Enclave {
    // A small stand-in image: PCR0 hashes the whole file, and the test executable is
    // large enough to dominate the run time.
    std::fs::create_dir_all(state).unwrap();
    let image = state.join("image.bin");
    std::fs::write(&image, b"sealgate-enclave test image").unwrap();
    let nsm = SimNsm::open(state, &image).unwrap();
    Enclave::boot(Mode::Sim, SealedStore::open(state).unwrap(), Box::new(nsm)).unwrap()
}

fn hello(e: &Enclave) -> HelloReply {
    match e.handle(Op::Hello {
        protocol_version: sealgate_shared::PROTOCOL_VERSION,
        config: config(),
    }) {
        Reply::Hello(h) => h,
        other => panic!("{other:?}"),
    }
}

fn mint_req() -> MintRequest {
    MintRequest {
        workspace: "ws_1".into(),
        agent: "ag_1".into(),
        task: Some("t1".into()),
        audience: "sts.amazonaws.com".into(),
        ttl_seconds: 300,
        caller: "key_1".into(),
        grant: None,
    }
}

fn code(r: Reply) -> ErrorCode {
    match r {
        Reply::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn call(s: &mut UnixStream, id: u64, op: Op) -> Response {
    s.write_all(&frame::encode(&Request { id, op }).unwrap()).await.unwrap();
    let body = read_frame(s).await.unwrap().expect("a response");
    frame::decode(&body).unwrap()
}

async fn start_server(dir: &Path) -> (Arc<Enclave>, std::path::PathBuf) {
    let enclave = Arc::new(boot(&dir.join("state")));
    let sock = dir.join("e.sock");
    let listener = Listener::bind(&Addr::Unix(sock.clone())).unwrap();
    tokio::spawn(listener.serve(enclave.clone()));
    (enclave, sock)
}

#[tokio::test]
async fn garbage_closes_only_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (_enclave, sock) = start_server(dir.path()).await;
    let mut good = UnixStream::connect(&sock).await.unwrap();
    assert!(matches!(
        call(
            &mut good,
            1,
            Op::Hello {
                protocol_version: sealgate_shared::PROTOCOL_VERSION,
                config: config()
            }
        )
        .await
        .reply,
        Reply::Hello(_)
    ));

    let garbage: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 0],                               // empty frame
        vec![0xff, 0xff, 0xff, 0xff],                   // oversize header
        vec![0, 0, 0, 3, 0xde, 0xad, 0xbe],             // not CBOR
        vec![0, 0, 0, 2, 0x81],                         // truncated body, then EOF
        [vec![0, 1, 0, 0], vec![0x81; 65536]].concat(), // deeply nested arrays
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    for g in garbage {
        let mut bad = UnixStream::connect(&sock).await.unwrap();
        bad.write_all(&g).await.unwrap();
        let _ = bad.shutdown().await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "the enclave must close a connection that sent {:?}",
            &g[..g.len().min(8)]
        );
        assert!(rest.is_empty(), "no response to garbage");
        // The well-behaved connection is unaffected.
        let r = call(&mut good, 2, Op::MintToken(mint_req())).await;
        assert!(matches!(r.reply, Reply::Minted(_)), "{r:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_bytes_on_the_wire(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (_enclave, sock) = start_server(dir.path()).await;
            let mut bad = UnixStream::connect(&sock).await.unwrap();
            let _ = bad.write_all(&bytes).await;
            let _ = bad.shutdown().await;
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut rest)).await;
            prop_assert!(closed.is_ok());
            let mut good = UnixStream::connect(&sock).await.unwrap();
            let r = call(&mut good, 1, Op::Hello { protocol_version: sealgate_shared::PROTOCOL_VERSION, config: config() }).await;
            prop_assert!(matches!(r.reply, Reply::Hello(_)));
            Ok(())
        })?;
    }
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("sts.amazonaws.com".to_string()),
        Just("token.issued".to_string()),
        Just("{}".to_string()),
        "[ -~]{0,80}",
        ".{0,40}",
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    let mint = (
        arb_string(),
        arb_string(),
        proptest::option::of(arb_string()),
        arb_string(),
        any::<u64>(),
        arb_string(),
    )
        .prop_map(|(workspace, agent, task, audience, ttl_seconds, caller)| {
            Op::MintToken(MintRequest {
                workspace,
                agent,
                task,
                audience,
                ttl_seconds,
                caller,
                grant: None,
            })
        });
    let bytes = || proptest::collection::vec(any::<u8>(), 0..70).prop_map(ByteBuf::from);
    prop_oneof![
        mint,
        (arb_string(), arb_string()).prop_map(|(kind, event)| Op::Append { kind, event }),
        any::<u64>().prop_map(|size| Op::Ack { size }),
        (0u64..8).prop_map(|size| Op::Ack { size }),
        any::<u64>().prop_map(|from| Op::Unacked { from }),
        Just(Op::Checkpoint),
        arb_string().prop_map(|caller| Op::RotateKey { caller }),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..600).prop_map(ByteBuf::from))
            .prop_map(|nonce| Op::Attest { nonce }),
        (arb_string(), proptest::collection::vec(bytes(), 0..4))
            .prop_map(|(checkpoint, frontier)| Op::RestoreBegin { checkpoint, frontier }),
        (any::<u64>(), bytes(), bytes()).prop_map(|(index, hash, mac)| Op::RestoreLeaves {
            leaves: vec![TailLeaf { index, hash, mac }]
        }),
        (any::<u64>(), bytes()).prop_map(|(size, root)| Op::RestoreEnd { size, root }),
        (any::<u32>(), arb_string()).prop_map(|(v, issuer)| Op::Hello {
            protocol_version: v,
            config: EnclaveConfig { issuer, ..config() }
        }),
        Just(Op::Status),
        proptest::option::of(bytes()).prop_map(|nonce| Op::RecipientAttest { nonce }),
        (bytes(), proptest::option::of(bytes())).prop_map(|(cms, sealed)| Op::Unseal {
            ciphertext_for_recipient: cms,
            sealed_state: sealed
        }),
    ]
}

/// An enclave booted with KMS sealing: locked, no state on disk.
fn boot_locked(state: &Path) -> Enclave {
    std::fs::create_dir_all(state).unwrap();
    let image = state.join("image.bin");
    std::fs::write(&image, b"sealgate-enclave test image").unwrap();
    let nsm = SimNsm::open(state, &image).unwrap();
    // A proxy address nothing listens on: these tests never reach KMS.
    let kms = KmsClient::public(KmsProxy::Tcp(format!("127.0.0.1:{}", closed_port()))).unwrap();
    Enclave::boot_locked(Mode::Sim, Box::new(nsm), kms, None).unwrap()
}

/// A loopback port that was free a moment ago (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The removed `Unseal` (a data key relayed by the host) is refused whatever it carries,
/// and the enclave stays locked; `UnsealKms` that cannot reach KMS is a typed `Kms` error,
/// after which the enclave is still locked and answers `Status`.
#[tokio::test]
async fn a_locked_enclave_takes_no_data_key_from_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let e = boot_locked(&dir.path().join("state"));
    let old = e
        .serve(Op::Unseal {
            ciphertext_for_recipient: ByteBuf::from(vec![0x30, 0x80, 0, 0]),
            sealed_state: None,
        })
        .await;
    assert_eq!(code(old), ErrorCode::UnsealRejected);
    let unseal = Op::UnsealKms(KmsUnseal {
        region: "us-east-1".into(),
        key_id: "k".into(),
        endpoint_host: "kms.us-east-1.amazonaws.com".into(),
        credentials: AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        },
        stored: None,
    });
    match e.serve(unseal.clone()).await {
        Reply::Error(w) => {
            assert_eq!(w.code, ErrorCode::Kms, "{w:?}");
            assert!(w.message.contains("cannot reach the KMS proxy"), "{w:?}");
        }
        other => panic!("{other:?}"),
    }
    // A name other than KMS's own is refused before any connection (public roots).
    let Op::UnsealKms(mut elsewhere) = unseal else {
        unreachable!()
    };
    elsewhere.endpoint_host = "kms.attacker.example".into();
    match e.serve(Op::UnsealKms(elsewhere)).await {
        Reply::Error(w) => assert!(w.message.contains("is not kms.us-east-1.amazonaws.com"), "{w:?}"),
        other => panic!("{other:?}"),
    }
    match e.serve(Op::Status).await {
        Reply::Status(s) => assert!(s.locked && s.ciphertext_blob.is_none()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_locked_enclave_answers_only_the_sealing_operations() {
    let dir = tempfile::tempdir().unwrap();
    let e = boot_locked(&dir.path().join("state"));
    match e.handle(Op::Status) {
        Reply::Status(s) => {
            assert_eq!((s.sealing, s.locked), (Sealing::Kms, true));
            assert_eq!(s.sealed_state, None);
            assert_eq!(s.protocol_version, sealgate_shared::PROTOCOL_VERSION);
            assert_eq!(s.pcr0.len(), 48);
        }
        other => panic!("{other:?}"),
    }
    for op in [
        Op::Hello {
            protocol_version: sealgate_shared::PROTOCOL_VERSION,
            config: config(),
        },
        Op::Attest { nonce: None },
        Op::MintToken(mint_req()),
        Op::Append {
            kind: "x".into(),
            event: "{}".into(),
        },
        Op::Ack { size: 0 },
        Op::Unacked { from: 0 },
        Op::Checkpoint,
        Op::RotateKey { caller: "k".into() },
        Op::RestoreBegin {
            checkpoint: String::new(),
            frontier: vec![],
        },
        Op::RestoreLeaves { leaves: vec![] },
        Op::RestoreEnd {
            size: 0,
            root: ByteBuf::from(vec![0; 32]),
        },
    ] {
        assert_eq!(code(e.handle(op.clone())), ErrorCode::Locked, "{op:?}");
    }
    assert!(matches!(
        e.handle(Op::RecipientAttest { nonce: None }),
        Reply::RecipientAttestation(_)
    ));
    // Nothing was written: KMS sealing keeps no state of its own.
    assert!(!dir.path().join("state/sealed-state.bin").exists());
    assert!(!dir.path().join("state/sim-sealing.key").exists());
}

#[test]
fn a_simulator_sealed_enclave_refuses_the_kms_operations() {
    let dir = tempfile::tempdir().unwrap();
    let e = boot(&dir.path().join("state"));
    match e.handle(Op::Status) {
        Reply::Status(s) => assert_eq!((s.sealing, s.locked, s.sealed_state), (Sealing::Sim, false, None)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(e.handle(Op::RecipientAttest { nonce: None })),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(e.handle(Op::Unseal {
            ciphertext_for_recipient: ByteBuf::from(vec![1]),
            sealed_state: None
        })),
        ErrorCode::UnsealRejected,
        "the removed operation, refused everywhere"
    );
    // Sealing happens on disk, so nothing is handed to the host.
    assert_eq!(hello(&e).sealed_state, None);
}

proptest! {
    // Few cases: every refused Unseal makes the enclave generate a new RSA-2048 key.
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn arbitrary_operations_never_unlock_a_locked_enclave(ops in proptest::collection::vec(arb_op(), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let e = boot_locked(dir.path());
        for op in ops {
            match e.handle(op) {
                Reply::Status(s) => prop_assert!(s.locked),
                Reply::RecipientAttestation(_) => {}
                Reply::Error(w) => prop_assert!(
                    matches!(w.code, ErrorCode::Locked | ErrorCode::UnsealRejected | ErrorCode::BadRequest),
                    "{:?}", w
                ),
                other => prop_assert!(false, "a locked enclave answered {:?}", other),
            }
        }
        match e.handle(Op::Status) {
            Reply::Status(s) => prop_assert!(s.locked),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn arbitrary_operations_never_panic_and_keep_the_log_consistent(ops in proptest::collection::vec(arb_op(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let e = boot(dir.path());
        let _ = hello(&e);
        let mut store = TreeStore::new();
        // The genesis leaf.
        if let Reply::Leaves(l) = e.handle(Op::Unacked { from: 0 }) {
            for leaf in &l { store.push(merkle::leaf_hash(&leaf.bytes)); }
        }
        for op in ops {
            match e.handle(op) {
                Reply::Minted(m) => store.push(merkle::leaf_hash(&m.leaf.bytes)),
                Reply::Appended(l) => store.push(merkle::leaf_hash(&l.bytes)),
                Reply::Rotated(r) => store.push(merkle::leaf_hash(&r.leaf.bytes)),
                _ => {}
            }
        }
        // Whatever happened, acknowledging everything yields a checkpoint over exactly
        // the leaves handed out.
        let n = store.len();
        match e.handle(Op::Ack { size: n }) {
            Reply::Checkpoint(cp) => {
                let vk: VerifierKey = hello(&e).checkpoint_key.parse().unwrap();
                let opened = vk.open(&cp.note).unwrap();
                prop_assert_eq!(opened.size, n);
                prop_assert_eq!(opened.root, store.root(n).unwrap());
            }
            other => prop_assert!(false, "ack failed: {:?}", other),
        }
    }
}

#[test]
fn host_cannot_append_enclave_only_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let e = boot(dir.path());
    hello(&e);
    for kind in [
        "token.issued",
        "token.anything",
        "key.rotated",
        "enclave.boot",
        "enclave.genesis",
    ] {
        assert_eq!(
            code(e.handle(Op::Append {
                kind: kind.into(),
                event: "{}".into()
            })),
            ErrorCode::Forbidden,
            "{kind}"
        );
    }
    for (kind, event) in [
        ("Bad Kind", "{}"),
        ("ok.kind", "[1]"),
        ("ok.kind", "not json"),
        ("ok.kind", &"x".repeat(20_000)),
    ] {
        assert_eq!(
            code(e.handle(Op::Append {
                kind: kind.into(),
                event: event.into()
            })),
            ErrorCode::BadRequest,
            "{kind}"
        );
    }
    match e.handle(Op::Append {
        kind: "aws.sts.assume_role".into(),
        event: r#"{"request_id":"r1"}"#.into(),
    }) {
        Reply::Appended(l) => {
            let leaf = sealgate_shared::leaf::parse(&l.bytes).unwrap();
            assert_eq!(
                leaf.origin,
                sealgate_shared::leaf::Origin::Host,
                "host events are labelled"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mint_validates_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let e = boot(dir.path());
    assert_eq!(
        code(e.handle(Op::MintToken(mint_req()))),
        ErrorCode::NotReady,
        "no minting before Hello"
    );
    hello(&e);
    let cases: Vec<fn(&mut MintRequest)> = vec![
        |r| r.workspace = "ws:1".into(),
        |r| r.agent = String::new(),
        |r| r.task = Some("a*".into()),
        |r| r.audience = "evil.example.com".into(),
        |r| r.ttl_seconds = 59,
        |r| r.ttl_seconds = 3601,
        |r| r.caller = "has space".into(),
        |r| {
            r.task = None;
            r.grant = Some("gr:1".into());
        },
        // A grant token has no task.
        |r| r.grant = Some("gr_1".into()),
    ];
    for (i, f) in cases.into_iter().enumerate() {
        let mut r = mint_req();
        f(&mut r);
        assert_eq!(code(e.handle(Op::MintToken(r))), ErrorCode::BadRequest, "case {i}");
    }
    match e.handle(Op::MintToken(mint_req())) {
        Reply::Minted(m) => {
            let leaf = sealgate_shared::leaf::parse(&m.leaf.bytes).unwrap();
            assert_eq!(leaf.kind, "token.issued");
            assert_eq!(leaf.data["sub"], "ws:ws_1:agent:ag_1:task:t1");
            assert_eq!(m.exp - m.iat, 300);
        }
        other => panic!("{other:?}"),
    }
    // Issue 9, hole 2: the grant path's subject is a namespace of its own, built by the
    // enclave, and the grant id rides along as a session tag.
    let mut r = mint_req();
    r.task = None;
    r.grant = Some("gr_1".into());
    match e.handle(Op::MintToken(r)) {
        Reply::Minted(m) => {
            let leaf = sealgate_shared::leaf::parse(&m.leaf.bytes).unwrap();
            assert_eq!(leaf.data["sub"], "ws:ws_1:grant:gr_1");
            let payload = m.token.as_deref().unwrap().split('.').nth(1).unwrap();
            use base64::Engine;
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(claims["sub"], "ws:ws_1:grant:gr_1");
            let tags = &claims["https://aws.amazon.com/tags"];
            assert_eq!(tags["principal_tags"]["sealgate:grant"], serde_json::json!(["gr_1"]));
            assert_eq!(tags["principal_tags"]["sealgate:agent"], serde_json::json!(["ag_1"]));
            assert_eq!(
                tags["principal_tags"]["sealgate:workspace"],
                serde_json::json!(["ws_1"])
            );
            assert_eq!(
                tags["transitive_tag_keys"],
                serde_json::json!(["sealgate:workspace", "sealgate:agent", "sealgate:grant"])
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn config_is_sealed_at_first_hello() {
    let dir = tempfile::tempdir().unwrap();
    let e = boot(dir.path());
    hello(&e);
    let other = EnclaveConfig {
        issuer: "https://evil.example.com".into(),
        ..config()
    };
    assert_eq!(
        code(e.handle(Op::Hello {
            protocol_version: sealgate_shared::PROTOCOL_VERSION,
            config: other.clone()
        })),
        ErrorCode::ConfigMismatch
    );
    assert_eq!(
        code(e.handle(Op::Hello {
            protocol_version: 99,
            config: config()
        })),
        ErrorCode::Version
    );
    // Witnesses are part of the sealed configuration: a host cannot add, drop or swap
    // them (nor lower the quorum) on an enclave that started without.
    let witness =
        sealgate_shared::cosignature::Cosigner::new("w.example", ed25519_dalek::SigningKey::from_bytes(&[4; 32]))
            .unwrap()
            .verifier()
            .to_string();
    let witnessed = EnclaveConfig {
        witnesses: vec![witness],
        witness_quorum: 1,
        ..config()
    };
    match e.handle(Op::Hello {
        protocol_version: sealgate_shared::PROTOCOL_VERSION,
        config: witnessed,
    }) {
        Reply::Error(w) => {
            assert_eq!(w.code, ErrorCode::ConfigMismatch);
            assert!(
                w.message.contains("witnesses none") && w.message.contains("witnesses 1 of 1: w.example"),
                "{}",
                w.message
            );
        }
        other => panic!("{other:?}"),
    }
    drop(e);
    let again = boot(dir.path());
    // The refusal reads like a sentence (issue 10: it printed `EnclaveConfig { issuer: …`),
    // and `Status` hands the host the sealed configuration for its own message.
    match again.handle(Op::Hello {
        protocol_version: sealgate_shared::PROTOCOL_VERSION,
        config: other.clone(),
    }) {
        Reply::Error(w) => {
            assert_eq!(w.code, ErrorCode::ConfigMismatch);
            assert!(!w.message.contains("EnclaveConfig"), "{}", w.message);
            assert!(
                w.message.contains(&format!("issuer {}", config().issuer))
                    && w.message.contains(&format!("issuer {}", other.issuer)),
                "{}",
                w.message
            );
        }
        r => panic!("{r:?}"),
    }
    match again.handle(Op::Status) {
        Reply::Status(s) => assert_eq!(s.config, Some(config())),
        r => panic!("{r:?}"),
    }
}

#[test]
fn status_reports_no_configuration_before_the_first_hello() {
    let dir = tempfile::tempdir().unwrap();
    let e = boot(dir.path());
    match e.handle(Op::Status) {
        Reply::Status(s) => assert_eq!(s.config, None),
        r => panic!("{r:?}"),
    }
}

/// A whole restore as the host sends it, one leaf per chunk; the first refusal is the
/// answer, or `RestoreEnd`'s.
fn restore(
    e: &Enclave,
    checkpoint: String,
    frontier: Vec<ByteBuf>,
    tail: Vec<TailLeaf>,
    size: u64,
    root: &[u8],
) -> Reply {
    match e.handle(Op::RestoreBegin { checkpoint, frontier }) {
        Reply::Restoring(_) => {}
        other => return other,
    }
    for leaf in tail {
        match e.handle(Op::RestoreLeaves { leaves: vec![leaf] }) {
            Reply::Restoring(_) => {}
            other => return other,
        }
    }
    e.handle(Op::RestoreEnd {
        size,
        root: ByteBuf::from(root.to_vec()),
    })
}

#[test]
fn restart_keeps_keys_and_restores_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let e = boot(dir.path());
    let h1 = hello(&e);
    let mut store = TreeStore::new();
    let mut leaves = Vec::new();
    if let Reply::Leaves(l) = e.handle(Op::Unacked { from: 0 }) {
        leaves.extend(l);
    }
    for _ in 0..5 {
        if let Reply::Minted(m) = e.handle(Op::MintToken(mint_req())) {
            leaves.push(m.leaf);
        }
    }
    for l in &leaves {
        store.push(merkle::leaf_hash(&l.bytes));
    }
    let cp = match e.handle(Op::Ack { size: 4 }) {
        Reply::Checkpoint(cp) => cp,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(e.handle(Op::Ack { size: 3 })),
        ErrorCode::BadRequest,
        "acks never go back"
    );
    assert_eq!(
        code(e.handle(Op::Ack { size: 99 })),
        ErrorCode::BadRequest,
        "acks cannot run ahead"
    );
    assert_eq!(
        code(e.handle(Op::RestoreBegin {
            checkpoint: cp.note.clone(),
            frontier: vec![],
        })),
        ErrorCode::BadRequest,
        "a live log refuses a restore"
    );
    drop(e);

    let e2 = boot(dir.path());
    let h2 = hello(&e2);
    assert_eq!(h2.token_keys, h1.token_keys, "same token key after restart");
    assert_eq!(
        h2.checkpoint_key, h1.checkpoint_key,
        "same checkpoint key after restart"
    );
    assert!(h2.log.needs_restore);
    assert_eq!(code(e2.handle(Op::MintToken(mint_req()))), ErrorCode::NotReady);

    let frontier: Vec<ByteBuf> = store
        .frontier(4)
        .unwrap()
        .iter()
        .map(|h| ByteBuf::from(h.to_vec()))
        .collect();
    let tail: Vec<TailLeaf> = leaves[4..]
        .iter()
        .map(|l| TailLeaf {
            index: l.index,
            hash: ByteBuf::from(merkle::leaf_hash(&l.bytes).to_vec()),
            mac: l.mac.clone(),
        })
        .collect();
    // Forgeries are refused and leave the log waiting.
    let mut forged_tail = tail.clone();
    forged_tail[0].hash = ByteBuf::from(merkle::leaf_hash(br#"{"v":1,"forged":true}"#).to_vec());
    let bad_cp = cp.note.replace("\n4\n", "\n3\n");
    let mut bad_frontier = frontier.clone();
    bad_frontier[0][0] ^= 1;
    let root = store.root(leaves.len() as u64).unwrap();
    for (c, f, t) in [
        (cp.note.clone(), frontier.clone(), forged_tail),
        (bad_cp, frontier.clone(), tail.clone()),
        (cp.note.clone(), bad_frontier, tail.clone()),
        (String::new(), vec![], tail.clone()),
    ] {
        assert_eq!(
            code(restore(&e2, c, f, t, leaves.len() as u64, &root)),
            ErrorCode::RestoreRejected
        );
    }
    match restore(&e2, cp.note, frontier, tail, leaves.len() as u64, &root) {
        Reply::Restored(head) => {
            assert_eq!(head.size, leaves.len() as u64 + 1, "restored leaves plus the boot leaf");
            assert_eq!(
                head.acked,
                leaves.len() as u64,
                "the restored tail came from the host's store"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(e2.handle(Op::MintToken(mint_req())), Reply::Minted(_)));
}

#[test]
fn key_rotation_keeps_the_old_key_published_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let e = boot(dir.path());
    assert_eq!(
        code(e.handle(Op::RotateKey { caller: "op".into() })),
        ErrorCode::NotReady,
        "no rotation before Hello"
    );
    let before = hello(&e);
    assert_eq!(before.token_keys.len(), 1);
    let old_kid = before.token_keys[0].kid.clone();
    assert_eq!(
        code(e.handle(Op::RotateKey { caller: "".into() })),
        ErrorCode::BadRequest
    );

    let rotated = match e.handle(Op::RotateKey {
        caller: "key_op".into(),
    }) {
        Reply::Rotated(r) => r,
        other => panic!("{other:?}"),
    };
    let keys = &rotated.hello.token_keys;
    assert_eq!(keys.len(), 2, "old and new key are both published");
    let new = keys.iter().find(|k| k.retire_at.is_none()).expect("a current key");
    let old = keys.iter().find(|k| k.kid == old_kid).expect("the old key");
    assert_ne!(new.kid, old_kid);
    let now = sealgate_enclave::now_millis() / 1000;
    let retire = old.retire_at.expect("the old key has a retirement time");
    assert!(
        retire >= now + 3600 - 5 && retire <= now + 3600 + 5,
        "served for one max TTL"
    );
    let leaf = sealgate_shared::leaf::parse(&rotated.leaf.bytes).unwrap();
    assert_eq!(leaf.kind, "key.rotated");
    assert_eq!(leaf.data["old_kid"], old_kid.as_str());
    assert_eq!(leaf.data["new_kid"], new.kid.as_str());
    assert_eq!(leaf.data["caller"], "key_op");

    // New tokens carry the new kid; attestation commits to both keys.
    match e.handle(Op::MintToken(mint_req())) {
        Reply::Minted(m) => {
            assert_eq!(
                jsonwebtoken::decode_header(m.token.as_deref().unwrap())
                    .unwrap()
                    .kid
                    .as_deref(),
                Some(new.kid.as_str())
            )
        }
        other => panic!("{other:?}"),
    }
    let commitment = e.commitment().unwrap();
    let mut want = vec![old_kid.clone(), new.kid.clone()];
    want.sort();
    assert_eq!(commitment.jwk_thumbprints, want);

    // Both keys come back after a restart.
    drop(e);
    let again = boot(dir.path());
    let h = hello(&again);
    let mut kids: Vec<_> = h.token_keys.iter().map(|k| (k.kid.clone(), k.retire_at)).collect();
    kids.sort();
    let mut expect = vec![(old_kid, Some(retire)), (new.kid.clone(), None)];
    expect.sort();
    assert_eq!(kids, expect);
}

/// What a restarted enclave needs from the host: the checkpoint note, the frontier at
/// its size, the MAC'd tail after it, and the host's tree over all of it.
struct RestoreKit {
    dir: tempfile::TempDir,
    note: String,
    cp_size: u64,
    frontier: Vec<ByteBuf>,
    tail: Vec<TailLeaf>,
    store: TreeStore,
}

/// An enclave with `minted` tokens of which the first few are checkpointed, then
/// restarted: it awaits a restore.
fn restarted_with_tail(minted: usize) -> (Enclave, RestoreKit) {
    let dir = tempfile::tempdir().unwrap();
    let e = boot(dir.path());
    hello(&e);
    let mut leaves = match e.handle(Op::Unacked { from: 0 }) {
        Reply::Leaves(l) => l,
        other => panic!("{other:?}"),
    };
    for _ in 0..minted {
        match e.handle(Op::MintToken(mint_req())) {
            Reply::Minted(m) => leaves.push(m.leaf),
            other => panic!("{other:?}"),
        }
    }
    let mut store = TreeStore::new();
    for l in &leaves {
        store.push(merkle::leaf_hash(&l.bytes));
    }
    let cp_size = 3;
    let note = match e.handle(Op::Ack { size: cp_size }) {
        Reply::Checkpoint(cp) => cp.note,
        other => panic!("{other:?}"),
    };
    drop(e);
    let e = boot(dir.path());
    assert!(hello(&e).log.needs_restore);
    let frontier = store
        .frontier(cp_size)
        .unwrap()
        .iter()
        .map(|h| ByteBuf::from(h.to_vec()))
        .collect();
    let tail = leaves[cp_size as usize..]
        .iter()
        .map(|l| TailLeaf {
            index: l.index,
            hash: ByteBuf::from(merkle::leaf_hash(&l.bytes).to_vec()),
            mac: l.mac.clone(),
        })
        .collect();
    (
        e,
        RestoreKit {
            dir,
            note,
            cp_size,
            frontier,
            tail,
            store,
        },
    )
}

impl RestoreKit {
    fn size(&self) -> u64 {
        self.store.len()
    }

    fn root(&self, size: u64) -> ByteBuf {
        ByteBuf::from(self.store.root(size).unwrap().to_vec())
    }

    fn begin(&self, e: &Enclave) -> Reply {
        e.handle(Op::RestoreBegin {
            checkpoint: self.note.clone(),
            frontier: self.frontier.clone(),
        })
    }

    /// Tail leaves `[from, to)` (tail positions, not log indices) as one chunk.
    fn chunk(&self, e: &Enclave, from: usize, to: usize) -> Reply {
        e.handle(Op::RestoreLeaves {
            leaves: self.tail[from..to].to_vec(),
        })
    }

    fn end(&self, e: &Enclave, size: u64) -> Reply {
        e.handle(Op::RestoreEnd {
            size,
            root: self.root(size),
        })
    }
}

/// Still waiting for a restore: nothing is minted, the head says so.
fn assert_unrestored(e: &Enclave) {
    assert_eq!(code(e.handle(Op::MintToken(mint_req()))), ErrorCode::NotReady);
    assert_eq!(code(e.handle(Op::Checkpoint)), ErrorCode::NotReady);
    assert!(hello(e).log.needs_restore, "the log must still await a restore");
}

fn restoring(r: Reply) -> u64 {
    match r {
        Reply::Restoring(size) => size,
        other => panic!("expected Restoring, got {other:?}"),
    }
}

/// Issue 11: a tail sent in chunks is checked chunk by chunk and adopted only at a
/// matching `RestoreEnd`; the adopted log continues exactly where the old one stopped.
#[test]
fn a_chunked_restore_continues_the_log() {
    let (e, kit) = restarted_with_tail(20);
    assert_eq!(restoring(kit.begin(&e)), kit.cp_size);
    let mut at = 0;
    for len in [7, 1, 0, kit.tail.len() - 8] {
        let reached = restoring(kit.chunk(&e, at, at + len));
        at += len;
        assert_eq!(reached, kit.cp_size + at as u64);
        assert_unrestored(&e);
    }
    assert_eq!(at, kit.tail.len());
    match kit.end(&e, kit.size()) {
        Reply::Restored(head) => assert_eq!((head.acked, head.size), (kit.size(), kit.size() + 1)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(e.handle(Op::MintToken(mint_req())), Reply::Minted(_)));
    // The restored tree is the old one: a checkpoint at its size has the host's root.
    let vk: VerifierKey = hello(&e).checkpoint_key.parse().unwrap();
    match e.handle(Op::Checkpoint) {
        Reply::Checkpoint(cp) => {
            let opened = vk.open(&cp.note).unwrap();
            assert_eq!(opened.size, kit.size());
            assert_eq!(opened.root, kit.store.root(kit.size()).unwrap());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(kit.begin(&e)),
        ErrorCode::BadRequest,
        "a restored log refuses another restore"
    );
    drop(kit.dir);
}

#[test]
fn restore_chunks_out_of_order_are_refused() {
    let (e, kit) = restarted_with_tail(12);
    restoring(kit.begin(&e));
    // The second chunk first: its first index is not where the restore stands.
    assert_eq!(code(kit.chunk(&e, 4, 8)), ErrorCode::RestoreRejected);
    assert_unrestored(&e);
    // The refusal abandoned the restore: the first chunk now has nothing to continue.
    assert_eq!(code(kit.chunk(&e, 0, 4)), ErrorCode::NotReady);
    // A chunk sent twice is out of order too.
    restoring(kit.begin(&e));
    restoring(kit.chunk(&e, 0, 4));
    assert_eq!(code(kit.chunk(&e, 0, 4)), ErrorCode::RestoreRejected);
    // So are leaves out of order inside a chunk.
    restoring(kit.begin(&e));
    let mut swapped = kit.tail[..4].to_vec();
    swapped.swap(1, 2);
    assert_eq!(
        code(e.handle(Op::RestoreLeaves { leaves: swapped })),
        ErrorCode::RestoreRejected
    );
    assert_unrestored(&e);
    assert_eq!(code(kit.end(&e, kit.size())), ErrorCode::NotReady, "nothing to end");
    assert_unrestored(&e);
}

#[test]
fn a_bad_mac_in_the_second_chunk_leaves_the_enclave_unrestored() {
    let (e, kit) = restarted_with_tail(12);
    restoring(kit.begin(&e));
    assert_eq!(restoring(kit.chunk(&e, 0, 4)), kit.cp_size + 4);
    let mut second = kit.tail[4..8].to_vec();
    second[2].mac[0] ^= 1;
    assert_eq!(
        code(e.handle(Op::RestoreLeaves { leaves: second })),
        ErrorCode::RestoreRejected
    );
    assert_unrestored(&e);
    // Neither the first chunk nor the good leaves of the second were kept: the rest of
    // the tail and the end are refused, and the log is still waiting.
    assert_eq!(code(kit.chunk(&e, 8, kit.tail.len())), ErrorCode::NotReady);
    assert_eq!(code(kit.end(&e, kit.size())), ErrorCode::NotReady);
    assert_unrestored(&e);
    // A hash swapped for another leaf's (under its own MAC) is refused the same way.
    restoring(kit.begin(&e));
    let mut forged = kit.tail[..2].to_vec();
    forged[1].hash = kit.tail[0].hash.clone();
    assert_eq!(
        code(e.handle(Op::RestoreLeaves { leaves: forged })),
        ErrorCode::RestoreRejected
    );
    assert_unrestored(&e);
}

#[test]
fn restore_end_with_the_wrong_size_or_root_is_refused() {
    let (e, kit) = restarted_with_tail(12);
    let full = kit.size();
    let all = kit.tail.len();
    for (sent, size, root) in [
        // Ends before the last leaves it sent.
        (all, full - 4, kit.root(full - 4)),
        // Claims leaves it never sent (the last chunk went missing).
        (all - 4, full, kit.root(full)),
        (all, full + 1, kit.root(full)),
        // The right size with another root.
        (all, full, kit.root(full - 1)),
        // A root that is not a hash.
        (all, full, ByteBuf::from(vec![1; 5])),
    ] {
        restoring(kit.begin(&e));
        restoring(kit.chunk(&e, 0, all - 4));
        if sent == all {
            restoring(kit.chunk(&e, all - 4, all));
        }
        assert_eq!(
            code(e.handle(Op::RestoreEnd { size, root })),
            ErrorCode::RestoreRejected,
            "{sent} leaves sent, end at {size}"
        );
        assert_unrestored(&e);
        assert_eq!(code(kit.end(&e, full)), ErrorCode::NotReady, "the refusal abandoned it");
    }
    // The same enclave restores fine from a fresh start.
    restoring(kit.begin(&e));
    restoring(kit.chunk(&e, 0, kit.tail.len()));
    assert!(matches!(kit.end(&e, full), Reply::Restored(_)));
}

#[test]
fn a_fresh_restore_begin_discards_a_half_done_restore() {
    let (e, kit) = restarted_with_tail(12);
    restoring(kit.begin(&e));
    restoring(kit.chunk(&e, 0, 6));
    // The host crashed and starts over: the six leaves already sent count for nothing.
    assert_eq!(restoring(kit.begin(&e)), kit.cp_size);
    assert_eq!(
        code(kit.chunk(&e, 6, kit.tail.len())),
        ErrorCode::RestoreRejected,
        "continuing the old restore is a gap in the new one"
    );
    // A refused Begin discards it too: nothing can continue after it.
    restoring(kit.begin(&e));
    restoring(kit.chunk(&e, 0, 6));
    assert_eq!(
        code(e.handle(Op::RestoreBegin {
            checkpoint: kit.note.replace("\n3\n", "\n2\n"),
            frontier: kit.frontier.clone(),
        })),
        ErrorCode::RestoreRejected
    );
    assert_eq!(code(kit.chunk(&e, 6, kit.tail.len())), ErrorCode::NotReady);
    assert_unrestored(&e);
    // Started over properly, the whole tail restores.
    restoring(kit.begin(&e));
    restoring(kit.chunk(&e, 0, 6));
    restoring(kit.chunk(&e, 6, kit.tail.len()));
    assert!(matches!(kit.end(&e, kit.size()), Reply::Restored(_)));
}

/// Through the real server: a tail longer than one frame could hold as a single
/// message is restored in chunks over one connection.
#[tokio::test]
async fn a_tail_larger_than_one_frame_restores_over_the_socket() {
    let n = 2 * frame::MAX_FRAME / 80;
    let (e, kit) = restarted_with_tail(n);
    drop(e);
    let enclave = Arc::new(boot(kit.dir.path()));
    let sock = kit.dir.path().join("e.sock");
    let listener = Listener::bind(&Addr::Unix(sock.clone())).unwrap();
    tokio::spawn(listener.serve(enclave.clone()));
    let mut s = UnixStream::connect(&sock).await.unwrap();
    let hello_op = Op::Hello {
        protocol_version: sealgate_shared::PROTOCOL_VERSION,
        config: config(),
    };
    assert!(matches!(call(&mut s, 1, hello_op).await.reply, Reply::Hello(_)));
    // As one message the tail does not fit a frame.
    assert!(frame::encode(&Op::RestoreLeaves {
        leaves: kit.tail.clone()
    })
    .is_err());
    let begin = Op::RestoreBegin {
        checkpoint: kit.note.clone(),
        frontier: kit.frontier.clone(),
    };
    assert_eq!(restoring(call(&mut s, 2, begin).await.reply), kit.cp_size);
    let mut id = 3;
    for chunk in kit.tail.chunks(RESTORE_CHUNK_LEAVES) {
        let op = Op::RestoreLeaves { leaves: chunk.to_vec() };
        restoring(call(&mut s, id, op).await.reply);
        id += 1;
    }
    assert!(id > 5, "several chunks");
    let end = Op::RestoreEnd {
        size: kit.size(),
        root: kit.root(kit.size()),
    };
    match call(&mut s, id, end).await.reply {
        Reply::Restored(head) => assert_eq!(head.acked, kit.size()),
        other => panic!("{other:?}"),
    }
}

/// An NSM that holds every attestation until the test lets it go, and says when one
/// has started: it stands for a slow `/dev/nsm` ioctl.
struct GatedNsm {
    inner: SimNsm,
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl sealgate_enclave::nsm::Nsm for GatedNsm {
    fn attest(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, sealgate_enclave::nsm::NsmError> {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv();
        sealgate_enclave::nsm::Nsm::attest(&self.inner, user_data, nonce, public_key)
    }

    fn pcr0(&self) -> Vec<u8> {
        sealgate_enclave::nsm::Nsm::pcr0(&self.inner)
    }
}

/// Issue 11 part 6: an attestation's NSM call runs off the async executor. The server
/// runs on a single-threaded runtime, so if `Attest` ran on it, the whole enclave would
/// stop while the NSM works: here a `Status` sent after it is answered while the
/// attestation is still held inside the NSM, and the attestation completes afterwards.
/// (The 60 s bounds only turn such a hang into a failure; nothing here measures time.)
#[test]
fn an_attestation_in_the_nsm_does_not_block_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let image = state.join("image.bin");
    std::fs::write(&image, b"sealgate-enclave test image").unwrap();
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let nsm = GatedNsm {
        inner: SimNsm::open(&state, &image).unwrap(),
        entered: std::sync::Mutex::new(entered_tx),
        release: std::sync::Mutex::new(release_rx),
    };
    let enclave = Arc::new(Enclave::boot(Mode::Sim, SealedStore::open(&state).unwrap(), Box::new(nsm)).unwrap());
    hello(&enclave);

    let sock = dir.path().join("e.sock");
    let server = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = {
        let _in_runtime = server.enter();
        Listener::bind(&Addr::Unix(sock.clone())).unwrap()
    };
    std::thread::spawn(move || server.block_on(listener.serve(enclave)));

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client.block_on(async {
        let mut s = UnixStream::connect(&sock).await.unwrap();
        let send = |id, op| frame::encode(&Request { id, op }).unwrap();
        s.write_all(&send(2, Op::Attest { nonce: None })).await.unwrap();
        entered
            .recv_timeout(Duration::from_secs(60))
            .expect("the attestation reached the NSM");
        s.write_all(&send(3, Op::Status)).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(60), read_frame(&mut s)).await;
        let Ok(first) = first else {
            let _ = release.send(());
            panic!("Status was not answered while an attestation was in the NSM: the NSM call blocks the executor");
        };
        let first: Response = frame::decode(&first.unwrap().unwrap()).unwrap();
        assert_eq!(first.id, 3, "Status is answered first: {first:?}");
        assert!(matches!(first.reply, Reply::Status(_)), "{first:?}");
        release.send(()).unwrap();
        let second: Response = frame::decode(&read_frame(&mut s).await.unwrap().unwrap()).unwrap();
        assert_eq!(second.id, 2);
        assert!(matches!(second.reply, Reply::Attestation(_)), "{second:?}");
    });
}
