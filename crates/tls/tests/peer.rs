//! The outbound client of gateway-to-gateway calls against real sockets: a peer on HTTPS whose
//! certificate chains to the configured CA is reached (HTTP/1.1, as the TLS proxy offers);
//! one whose certificate names another host, or chains to another CA, is refused; a plain
//! HTTP peer is refused unless it is on loopback and the policy allows it.
#![allow(missing_docs, clippy::unwrap_used)]

use carechain_tls::{
    PeerClient, PeerPolicy, RedactedUrl, TlsError, Trust,
    testing::{TestCa, TlsProxy},
};
use std::{net::SocketAddr, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 server answering every request `200 {"ok":true}`.
async fn plain_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                // One request per connection, headers only (the client sends no body).
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = br#"{"ok":true}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body).await;
            });
        }
    });
    addr
}

fn url(s: &str) -> RedactedUrl {
    RedactedUrl::parse(s).unwrap()
}

#[tokio::test]
async fn peers_are_reached_over_verified_https_only() {
    let dir = std::env::temp_dir().join(format!("carechain-tls-peer-{}", std::process::id()));
    let ca = TestCa::new(&dir, "consortium");
    let stranger = TestCa::new(&dir, "stranger");
    let upstream = plain_server().await;
    let peer = TlsProxy::start(&ca.issue(&["127.0.0.1"], "peer"), upstream).await;
    let misnamed = TlsProxy::start(&ca.issue(&["hospital-b.example"], "misnamed"), upstream).await;
    let timeout = Duration::from_secs(5);
    let trusting = PeerClient::new(
        &Trust::CaFile(ca.ca_file().to_owned()),
        PeerPolicy::default(),
        timeout,
    )
    .unwrap();

    let answer = trusting
        .get(&url(&format!("{}/metadata", peer.url())))
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), r#"{"ok":true}"#);

    let err = trusting
        .get(&url(&format!("{}/metadata", misnamed.url())))
        .unwrap()
        .send()
        .await
        .expect_err("the certificate names another host");
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");
    let untrusting = PeerClient::new(
        &Trust::CaFile(stranger.ca_file().to_owned()),
        PeerPolicy::default(),
        timeout,
    )
    .unwrap();
    let err = untrusting
        .get(&url(&format!("{}/metadata", peer.url())))
        .unwrap()
        .send()
        .await
        .expect_err("another CA");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    // Plain HTTP: refused before anything is sent, unless loopback and allowed.
    let plain = url(&format!("http://{upstream}/metadata"));
    assert!(matches!(
        trusting.get(&plain),
        Err(TlsError::PlainHttpRefused { .. })
    ));
    let development = PeerClient::new(
        &Trust::CaFile(ca.ca_file().to_owned()),
        PeerPolicy {
            allow_plain_http_loopback: true,
        },
        timeout,
    )
    .unwrap();
    let answer = development.get(&plain).unwrap().send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(matches!(
        development.get(&url("http://hospital-b.example/metadata")),
        Err(TlsError::PlainHttpRefused { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
