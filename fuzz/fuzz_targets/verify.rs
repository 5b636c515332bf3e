//! Every scheme's verifier, signature-header parsers and handshakes, over any request: an answer (a verified
//! request or a known refusal reason), never a panic, and no refusal that quotes a secret.
#![no_main]

use hookline_fuzz::Request;
use hookline_providers::verify::VerifyError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(req) = Request::parse(data) else { return };
    let verifier = &req.source().verifier;
    let view = req.view();
    let refused = |e: &VerifyError| {
        assert!(VerifyError::REASONS.contains(&e.reason()), "unlisted reason {}", e.reason());
        let message = e.to_string();
        for secret in verifier.secrets() {
            let secret = String::from_utf8_lossy(secret.expose());
            assert!(!message.contains(secret.as_ref()), "a refusal quotes a secret: {message}");
        }
    };
    if let Some(Err(e)) = verifier.get_challenge(&view) {
        refused(&e);
    }
    match verifier.verify(&view, bytes::Bytes::from(req.body.clone())) {
        Ok(verified) => {
            assert!(verified.matched_secret().is_none_or(|i| i < verifier.secrets().len()));
            let _ = verifier.handshake(&view, &verified);
        }
        Err(e) => refused(&e),
    }
});
