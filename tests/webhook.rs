//! Ticket events reach an external help desk through the webhook: a real
//! HTTP receiver (a small HTTP/1.1 server on loopback, started here) that
//! answers 500 to the first delivery of every event, then 200. Each event
//! must be accepted exactly once per id, signed with HMAC-SHA256.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "a-very-secret-webhook-key";

#[derive(Default)]
struct Seen {
    /// event id → deliveries (status answered)
    deliveries: HashMap<String, Vec<u16>>,
    bad_signatures: usize,
    bodies: Vec<Value>,
}

fn receiver() -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = serve(stream, &shared);
        }
    });
    (url, seen)
}

fn serve(mut stream: std::net::TcpStream, seen: &Mutex<Seen>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut headers = HashMap::new();
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        let id = headers
            .get("x-firstline-event-id")
            .cloned()
            .unwrap_or_default();
        // What a receiver does (documented in relay/src/webhook.rs): the
        // signature covers TIMESTAMP "." BODY, and a timestamp more than
        // five minutes off is a replay.
        let timestamp: i64 = headers
            .get("x-firstline-timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let signed = |ts: i64| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
            let mut msg = format!("{ts}.").into_bytes();
            msg.extend_from_slice(&body);
            format!("sha256={}", hex::encode(ring::hmac::sign(&key, &msg)))
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let fresh = (now - timestamp).abs() <= 300;
        let status = {
            let mut s = seen.lock().unwrap();
            let given = headers.get("x-firstline-signature");
            if given != Some(&signed(timestamp)) || !fresh {
                s.bad_signatures += 1;
            }

            let tries = s.deliveries.entry(id).or_default();
            let status = if tries.is_empty() { 500 } else { 200 };
            tries.push(status);
            if status == 200 {
                s.bodies
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            status
        };
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        write!(
            stream,
            "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n"
        )?;
    }
}

#[test]
fn each_ticket_event_is_delivered_once_per_id_despite_a_500() {
    let (url, seen) = receiver();
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.configure(&format!(
        "webhook_url = \"{url}\"\nwebhook_secret = \"{SECRET}\"\nwebhook_max_backoff_secs = 1"
    ));
    relay.serve();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("tech", "technician"));
    let out = console.run(&["ticket", "new", "VPN down for the sales team", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
        .as_u64()
        .unwrap()
        .to_string();
    assert!(console
        .run(&["ticket", "comment", &id, "looking"])
        .status
        .success());
    assert!(console.run(&["ticket", "resolve", &id]).status.success());

    let done = wait_until(Duration::from_secs(30), || {
        let s = seen.lock().unwrap();
        s.deliveries.len() == 3 && s.deliveries.values().all(|d| d.contains(&200))
    });
    let s = seen.lock().unwrap();
    assert!(
        done,
        "deliveries: {:?}\nrelay:\n{}",
        s.deliveries,
        relay.log()
    );
    for (id, tries) in &s.deliveries {
        assert_eq!(tries[0], 500, "{id}");
        assert_eq!(
            tries.iter().filter(|t| **t == 200).count(),
            1,
            "{id} accepted more than once: {tries:?}"
        );
    }
    assert_eq!(s.bad_signatures, 0);
    let kinds: Vec<&str> = s
        .bodies
        .iter()
        .map(|b| b["event"].as_str().unwrap())
        .collect();
    for k in ["opened", "comment", "status"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let keys: Vec<&str> = s
        .bodies
        .iter()
        .map(|b| b["ticket_key"].as_str().unwrap())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one stable ticket key: {keys:?}"
    );
}
