//! Message decoding: `decode_payload` on arbitrary bytes.
//!
//! Checked:
//! * never a panic; an error has a wire code and a message;
//! * `decode_payload` agrees with plain `serde_json::from_slice::<Envelope>`
//!   for every payload whose envelope version is the one this build speaks;
//! * whatever decodes re-encodes, decodes back to an equal value, and
//!   re-encodes to the same bytes;
//! * for requests that carry a check and its arguments (`run`, `exec`),
//!   `effect::check_role` agrees with a model of its table: `plugin` needs a
//!   technician, `tcp --send[=…]` and `http --contains[=…]` need a technician,
//!   everything else a viewer, and no check ever needs an admin.
#![no_main]

use firstline_proto::effect::check_role;
use firstline_proto::frame::{decode_payload, encode, FrameError, MAX_FRAME_LEN};
use firstline_proto::message::{Envelope, Message, Role, ENVELOPE_VERSION};
use libfuzzer_sys::fuzz_target;


fn expected_role(check: &str, args: &[String]) -> Role {
    let opt = match check {
        "plugin" => return Role::Technician,
        "tcp" => "--send",
        "http" => "--contains",
        _ => return Role::Viewer,
    };
    let with_eq = format!("{opt}=");
    if args.iter().any(|a| a == opt || a.starts_with(&with_eq)) {
        Role::Technician
    } else {
        Role::Viewer
    }
}

fuzz_target!(|data: &[u8]| {
    let decoded = decode_payload(data);
    let plain = serde_json::from_slice::<Envelope>(data);
    match (&decoded, &plain) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(a), Err(e)) => panic!("decode_payload accepted what serde refuses ({e}): {a:?}"),
        (Err(FrameError::UnknownVersion { found }), Ok(b)) => {
            assert_ne!(*found, u64::from(ENVELOPE_VERSION));
            assert_eq!(u64::from(b.v), *found);
        }
        (Err(e), Ok(b)) => {
            assert_ne!(
                b.v, ENVELOPE_VERSION,
                "decode_payload refused a valid envelope: {e}"
            )
        }
        (Err(_), Err(_)) => {}
    }

    let env = match decoded {
        Ok(env) => env,
        Err(e) => {
            let _ = e.code().quic_code();
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(env.v, ENVELOPE_VERSION);
    let _ = env.msg.kind();

    match &env.msg {
        Message::Run { check, args, .. } | Message::Exec { check, args, .. } => {
            let role = check_role(check, args);
            assert_eq!(
                role,
                expected_role(check, args),
                "check_role({check:?}, {args:?})"
            );
            assert_ne!(role, Role::Admin);
        }
        _ => {}
    }

    let bytes = match encode(&env) {
        Ok(b) => b,
        // Defaults written out can make the encoding longer than the input;
        // only an input close to the cap can get over it.
        Err(FrameError::TooLarge { .. }) if data.len() > MAX_FRAME_LEN / 8 => return,
        Err(e) => panic!("decoded envelope does not re-encode: {e}: {env:?}"),
    };
    let back = match decode_payload(&bytes[4..]) {
        Ok(back) => back,
        Err(e) => panic!("re-encoded envelope does not decode: {e}: {env:?}"),
    };
    assert_eq!(back, env, "round trip changed the envelope");
    assert_eq!(encode(&back).ok(), Some(bytes), "encoding is not stable");
});
