//! Fuzzes the HTTP shim's body decoder: any bytes a client may POST to
//! `/v1.0/bindings/{name}`. It must never panic, and when it accepts a body the
//! `data` it hands the binding must be valid JSON text (UTF-8, any depth) that
//! means what the body's `data` meant.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;

fuzz_target!(|input: &[u8]| {
    let body = Bytes::copy_from_slice(input);
    let Ok(request) = outrigger::api::http::decode_envelope(&body) else {
        return;
    };
    let shown = || String::from_utf8_lossy(input).into_owned();
    let text = std::str::from_utf8(&request.data)
        .unwrap_or_else(|e| panic!("data of {:?} is not UTF-8: {e}", shown()));
    // IgnoredAny checks the grammar without serde_json's depth limit.
    if let Err(e) = serde_json::from_str::<IgnoredAny>(text) {
        panic!("data {text:?} of {:?} is not JSON: {e}", shown());
    }
    // Where the body also parses as a plain value, the data is the same value.
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(input) {
        let expected = map.get("data").cloned().unwrap_or(Value::Null);
        let got: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("data {text:?} of {:?} does not parse: {e}", shown()));
        assert_eq!(got, expected, "data of {:?}", shown());
    }
});
