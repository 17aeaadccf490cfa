//! `http` and `tcp` against real servers on loopback:
//! - busybox httpd serving a folder: 200 with `--contains`, 404 → warn,
//!   a CGI answering 500 → crit, a redirect reported or followed,
//!   `--status` lists; `tcp` with a request and an expected answer;
//! - `openssl s_server` with a certificate of our own CA that expires in
//!   20 days: days left as a metric (warn under 30), trusted only with
//!   `--ca`, and the same days as `check_http -C`;
//! - a server that accepts and never answers, and a closed port: bounded, crit;
//! - `check_tcp` agreeing on open and closed ports.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_proto::Status;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// busybox httpd serving a small site.
struct Site {
    port: u16,
    _peer: Peer,
    _dir: tempfile::TempDir,
}

fn site() -> Site {
    let busybox = require("busybox", "busybox");
    let dir = tempdir();
    let root = dir.path();
    std::fs::write(root.join("index.html"), "hello from firstline\n").unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/index.html"), "below\n").unwrap();
    std::fs::create_dir_all(root.join("cgi-bin")).unwrap();
    let cgi = root.join("cgi-bin/boom");
    std::fs::write(
        &cgi,
        "#!/bin/sh\nprintf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nboom\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&cgi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_tcp_port();
    let mut peer = Peer::start(
        "busybox httpd",
        Command::new(busybox)
            .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
            .arg(root),
    );
    wait_for_tcp(&mut peer, SocketAddr::from(([127, 0, 0, 1], port)));
    Site {
        port,
        _peer: peer,
        _dir: dir,
    }
}

#[test]
fn status_codes_body_and_redirects() {
    let s = site();
    let base = format!("http://127.0.0.1:{}", s.port);

    let (r, _) = check(&[
        "http",
        &format!("{base}/"),
        "--contains",
        "hello from firstline",
    ]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.metrics["status_code"], 200.0);
    assert!(r.metrics["time_ms"] >= 0.0);
    assert_eq!(r.metrics["size_bytes"], 21.0);
    assert!(
        !r.metrics.contains_key("cert_days_left"),
        "plain http: {r:?}"
    );

    let (r, _) = check(&["http", &format!("{base}/"), "--contains", "goodbye"]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("does not contain"), "{}", r.summary);

    let (r, _) = check(&["http", &format!("{base}/missing")]);
    assert_eq!(r.status, Status::Warn, "404 warns, as check_http: {r:?}");
    assert_eq!(r.metrics["status_code"], 404.0);
    let (r, _) = check(&["http", &format!("{base}/missing"), "--status", "404"]);
    assert_eq!(r.status, Status::Ok, "{r:?}");

    let (r, _) = check(&["http", &format!("{base}/cgi-bin/boom")]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(r.metrics["status_code"], 500.0);

    // A folder without its slash redirects; reported, or followed.
    let (r, _) = check(&["http", &format!("{base}/sub")]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.summary.contains("redirects to"), "{}", r.summary);
    let (r, _) = check(&[
        "http",
        &format!("{base}/sub"),
        "--follow",
        "--status",
        "200",
    ]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.metrics["status_code"], 200.0);
    let (r, _) = check(&["http", &format!("{base}/sub"), "--status", "2xx"]);
    assert_eq!(r.status, Status::Crit, "{r:?}");

    // Response-time thresholds.
    let (r, _) = check(&["http", &format!("{base}/"), "--warn", "0"]);
    assert_eq!(r.status, Status::Warn, "{r:?}");
}

#[test]
fn tcp_connect_and_banner() {
    let s = site();
    let target = format!("127.0.0.1:{}", s.port);
    let (r, _) = check(&["tcp", &target]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.metrics.contains_key("connect_ms"));

    let (r, _) = check(&[
        "tcp",
        &target,
        "--send",
        "HEAD / HTTP/1.0\\r\\n\\r\\n",
        "--expect",
        "HTTP/1.",
    ]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.summary.contains("200"), "{}", r.summary);

    let (r, _) = check(&[
        "tcp",
        &target,
        "--send",
        "HEAD / HTTP/1.0\\r\\n\\r\\n",
        "--expect",
        "SSH-2.0",
        "--timeout",
        "2s",
    ]);
    assert_eq!(r.status, Status::Crit, "{r:?}");

    // check_tcp agrees on the open port and on a closed one.
    let plugin = nagios_plugin("check_tcp", "monitoring-plugins-basic");
    let out = Command::new(&plugin)
        .args(["-H", "127.0.0.1", "-p", &s.port.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let closed = free_tcp_port();
    let out = Command::new(&plugin)
        .args(["-H", "127.0.0.1", "-p", &closed.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (r, _) = check(&["tcp", &format!("127.0.0.1:{closed}")]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("refused"), "{}", r.summary);
}

#[test]
fn hung_server_is_bounded() {
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hung.local_addr().unwrap();
    let started = Instant::now();
    let (r, _) = check(&["http", &format!("http://{addr}/"), "--timeout", "1s"]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("no answer within 1 s"), "{}", r.summary);
    let (r, _) = check(&[
        "tcp",
        &addr.to_string(),
        "--expect",
        "220",
        "--timeout",
        "1s",
    ]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    drop(hung);
}

/// A CA and a server certificate for localhost/127.0.0.1 valid for `days`.
fn certificates(dir: &std::path::Path, days: u64) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let now = SystemTime::now();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "firstline test CA");
    ca.not_before = (now - Duration::from_secs(86_400)).into();
    ca.not_after = (now + Duration::from_secs(365 * 86_400)).into();
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();

    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    leaf.not_before = (now - Duration::from_secs(86_400)).into();
    leaf.not_after = (now + Duration::from_secs(days * 86_400)).into();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &Issuer::new(ca, ca_key)).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.join("leaf.key"), leaf_key.serialize_pem()).unwrap();
}

#[test]
fn tls_certificate_days_left() {
    let openssl = require("openssl", "openssl");
    let dir = tempdir();
    certificates(dir.path(), 20);
    let port = free_tcp_port();
    let mut peer = Peer::start(
        "openssl s_server",
        Command::new(openssl)
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-cert")
            .arg(dir.path().join("leaf.pem"))
            .arg("-key")
            .arg(dir.path().join("leaf.key"))
            .stdout(std::process::Stdio::null()),
    );
    wait_for_tcp(&mut peer, SocketAddr::from(([127, 0, 0, 1], port)));
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();

    for url in [
        format!("https://localhost:{port}/"),
        format!("https://127.0.0.1:{port}/"),
    ] {
        let (r, _) = check(&["http", &url, "--ca", ca]);
        assert_eq!(r.status, Status::Warn, "20 days < 30: {r:?}");
        let days = r.metrics["cert_days_left"];
        assert!((19.5..=20.5).contains(&days), "{r:?}");
        assert!(
            r.summary.contains("certificate expires in 20 days"),
            "{}",
            r.summary
        );
        let (r, _) = check(&[
            "http",
            &url,
            "--ca",
            ca,
            "--cert-warn",
            "10",
            "--cert-crit",
            "5",
        ]);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let (r, _) = check(&[
            "http",
            &url,
            "--ca",
            ca,
            "--cert-warn",
            "40",
            "--cert-crit",
            "25",
        ]);
        assert_eq!(r.status, Status::Crit, "{r:?}");
    }

    // Not our CA: the certificate is refused, and says why.
    let (r, _) = check(&["http", &format!("https://localhost:{port}/")]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("certificate"), "{}", r.summary);
    assert!(r.summary.contains("UnknownIssuer"), "{}", r.summary);

    // check_http counts the same days.
    let plugin = nagios_plugin("check_http", "monitoring-plugins-basic");
    let out = Command::new(plugin)
        .args([
            "-H",
            "localhost",
            "-p",
            &port.to_string(),
            "-S",
            "--sni",
            "-C",
            "30,7",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "check_http warns too: {text}");
    assert!(
        text.contains("expires in 19 day") || text.contains("expires in 20 day"),
        "{text}"
    );
    peer.assert_running();
}
