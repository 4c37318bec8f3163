//! Which HTTP version the provider client speaks: over `https://` it offers ALPN `h2, http/1.1`
//! and speaks HTTP/2 when the server picks h2 (APNs accepts nothing else); to a plain `http://`
//! stand-in it speaks HTTP/1.1. The TLS side is a real rustls server on loopback with a test CA.

// A test crate: its helpers may unwrap too (clippy.toml allows it in `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use retarget_push_sender::{PushProvider, client_builder};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::LazyConfigAcceptor;

/// A test-only CA (`openssl req -x509`, P-256) and a leaf for 127.0.0.1/localhost signed by it.
const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBpTCCAUugAwIBAgIUCUaq5kyOrs00TTVdffifEvnIEPQwCgYIKoZIzj0EAwIw
JzElMCMGA1UEAwwccmV0YXJnZXQgcHVzaC1zZW5kZXIgdGVzdCBDQTAgFw0yNjEx
MjgxNzAxMDhaGA8yMTI2MTEwNDE3MDEwOFowJzElMCMGA1UEAwwccmV0YXJnZXQg
cHVzaC1zZW5kZXIgdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBEw
O+hCkxDqw/9G2UiDlJKG8bLygAtfHZyXaS3pG6okz4KRynhMFtsVQmMzlC1xPFvX
Y01VSdjZFaqsv/IFWm+jUzBRMB0GA1UdDgQWBBSUJ1Dk4MzF5YzFeKBeYQ3IssfO
1TAfBgNVHSMEGDAWgBSUJ1Dk4MzF5YzFeKBeYQ3IssfO1TAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0gAMEUCIEKEuD/bQvf2PvrrGeALAw9cbNDtlLsigMOG
vpjiGa+8AiEA1irXolj6QW9YZegMKYVwqcJKamsWyLIs5JBj8C8mvTs=
-----END CERTIFICATE-----
";
const LEAF_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIB0TCCAXigAwIBAgIUDO1Ex5ubG44v2uTaVCpdCwkiefMwCgYIKoZIzj0EAwIw
JzElMCMGA1UEAwwccmV0YXJnZXQgcHVzaC1zZW5kZXIgdGVzdCBDQTAgFw0yNjEx
MjgxNzAxMDhaGA8yMTI2MTEwNDE3MDEwOFowFDESMBAGA1UEAwwJbG9jYWxob3N0
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZia+V0Q98ClkieWm4Uj1jjoe+vC9
Sqlde2Qm5FOPTCvJdNbPd1LysvMXnj2HASL5QJFowgdSXI4dqv4ic9nsJ6OBkjCB
jzAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEF
BQcDATAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwHQYDVR0OBBYEFHZH38mo
Sdmvily/TcSjDXNFYty3MB8GA1UdIwQYMBaAFJQnUOTgzMXljMV4oF5hDciyx87V
MAoGCCqGSM49BAMCA0cAMEQCIBfShLGmsLkY02zSCShWg2B/pMNjKzLxiHh5z86r
NOllAiAghotUp5IOBhYsEEgYlvt+YWj/wwSI9MhSrsnXelikUw==
-----END CERTIFICATE-----
";
const LEAF_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg+CnOk0FGNKeqLjea
82rEA+WYsU3WtB9/xb2MJzTLWAqhRANCAARmJr5XRD3wKWSJ5abhSPWOOh768L1K
qV17ZCbkU49MK8l01s93UvKy8xeePYcBIvlAkWjCB1Jcjh2q/iJz2ewn
-----END PRIVATE KEY-----
";

fn server_config() -> rustls::ServerConfig {
    let certs = vec![CertificateDer::from_pem_slice(LEAF_PEM.as_bytes()).expect("leaf cert")];
    let key = PrivateKeyDer::from_pem_slice(LEAF_KEY_PEM.as_bytes()).expect("leaf key");
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

#[tokio::test]
async fn https_base_negotiates_http2_through_alpn() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let start =
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await.expect("client hello");
        let offered: Vec<Vec<u8>> = start
            .client_hello()
            .alpn()
            .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        let mut tls = start.into_stream(Arc::new(server_config())).await.expect("handshake");
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut preface = [0_u8; 24];
        tls.read_exact(&mut preface).await.expect("client preface");
        (offered, negotiated, preface)
    });

    let ca = reqwest::Certificate::from_pem(CA_PEM.as_bytes()).expect("ca");
    let http = client_builder(Duration::from_secs(3)).add_root_certificate(ca).build().expect("client");
    let provider = PushProvider::with_client(
        http,
        "http://127.0.0.1:9",
        &format!("https://127.0.0.1:{port}"),
        tracking(),
    )
    .expect("provider");
    let app = app(None, Some(apns_config()));
    // The stand-in hangs up after the preface: the send itself fails, transiently.
    let result = provider.send_as(&app, &ios(&app), &message(&app, None, None)).await;
    assert!(
        matches!(result, Err(retarget_shared::services::provider::SendError::Transient { .. })),
        "{result:?}"
    );

    let (offered, negotiated, preface) = server.await.expect("server task");
    assert_eq!(offered, [b"h2".to_vec(), b"http/1.1".to_vec()], "ALPN offer");
    assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]), "ALPN choice");
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2 connection preface");
}

#[tokio::test]
async fn plain_http_base_speaks_http11() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut byte = [0_u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.expect("request head");
            head.push(byte[0]);
        }
        let length = String::from_utf8_lossy(&head)
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_default();
        let mut body = vec![0_u8; length];
        tcp.read_exact(&mut body).await.expect("body");
        tcp.write_all(b"HTTP/1.1 200 OK\r\napns-id: plain-1\r\ncontent-length: 0\r\n\r\n")
            .await
            .expect("answer");
        String::from_utf8_lossy(&head).into_owned()
    });
    let provider = PushProvider::new(
        "http://127.0.0.1:9".into(),
        format!("http://127.0.0.1:{port}"),
        Duration::from_secs(3),
        tracking(),
    )
    .expect("provider");
    let app = app(None, Some(apns_config()));
    let accepted = provider.send_as(&app, &ios(&app), &message(&app, None, None)).await.expect("accepted");
    assert_eq!(accepted.provider_id.as_deref(), Some("plain-1"));
    let head = server.await.expect("server task");
    assert!(head.starts_with(&format!("POST /3/device/{IOS_TOKEN} HTTP/1.1\r\n")), "{head}");
}
