//! Stratum over TLS: a miner on the `[tls]` port (a self-signed certificate
//! it trusts) goes through the handshake and has a share accepted and
//! recorded like on the plain port; plain Stratum on the TLS port gets no
//! session; a missing or mismatched certificate stops the start with a
//! message naming the setting.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{DIFF, Miner, Want, record_where, rig};
use sluice_core::ShareStatus;
use sluice_testkit::{eventually, unique_name};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

/// A self-signed certificate for `localhost` in a fresh directory: its
/// PEM files and the DER a client trusts.
fn certificate() -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let dir = std::env::temp_dir().join(unique_name("sserver-tls-"));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key, certified.cert.der().clone())
}

fn tls_config(cert_file: PathBuf, key_file: PathBuf) -> sserver::TlsConfig {
    sserver::TlsConfig {
        listen: format!("127.0.0.1:{}", sluice_testkit::free_port())
            .parse()
            .unwrap(),
        cert_file,
        key_file,
    }
}

fn connector(trusted: CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(trusted).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_over_tls_mines_like_one_on_the_plain_port() {
    let (cert, key, der) = certificate();
    let tls = tls_config(cert, key);
    let addr = tls.listen;
    let rig = rig(|c| c.tls = Some(tls)).await;

    let connector = connector(der);
    let stream = eventually(Duration::from_secs(30), "the TLS listener", || async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.ok()
    })
    .await;
    let mut m = Miner::new(stream);
    let job = m.handshake(&format!("{}.tls1", rig.user)).await;
    assert!(job.clean);

    let shares = rig.shares().await;
    let good = m.mine(&job, DIFF, None, Want::Share);
    m.submit(good.clone()).await.unwrap();
    let rec = record_where(&shares, Duration::from_secs(20), "the TLS share", |s| {
        s.nonce == good.nonce && s.worker_name == "tls1"
    })
    .await;
    assert_eq!(rec.status, ShareStatus::Accepted);
    assert_eq!(rec.client_ip, std::net::IpAddr::from([127, 0, 0, 1]));
    // The plain port still serves.
    let (_plain, _) = rig.ready_miner().await;

    // Plain Stratum on the TLS port: no handshake, no session, counted.
    let mut plain = Miner::new(TcpStream::connect(addr).await.unwrap());
    plain
        .raw(r#"{"id":1,"method":"mining.subscribe","params":[]}"#)
        .await;
    assert!(plain.until_closed().await.is_empty(), "no Stratum answer");
    // The socket closes as the handshake fails, just before it is counted.
    let metrics = &rig.server_ctx.metrics;
    eventually(
        Duration::from_secs(10),
        "the failed handshake counted",
        || {
            let counted = metrics
                .encode()
                .contains("sserver_tls_handshake_failures_total 1");
            async move { counted.then_some(()) }
        },
    )
    .await;
}

#[test]
fn a_missing_or_mismatched_certificate_is_named() {
    let (cert, key, _) = certificate();
    let missing = tls_config(cert.with_file_name("nope.pem"), key.clone());
    let error = missing.acceptor().err().unwrap().to_string();
    assert!(
        error.starts_with("tls.cert_file ") && error.contains("nope.pem"),
        "{error}"
    );

    let (_, other_key, _) = certificate();
    let mismatched = tls_config(cert.clone(), other_key);
    let error = mismatched.acceptor().err().unwrap().to_string();
    assert!(error.starts_with("tls: "), "{error}");

    let not_a_key = tls_config(cert.clone(), cert);
    let error = not_a_key.acceptor().err().unwrap().to_string();
    assert!(error.starts_with("tls.key_file "), "{error}");
}
