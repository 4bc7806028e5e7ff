//! Fuzzes the cron binding's schedule parser (`schedule` metadata): it must
//! never panic, whatever the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = outrigger::bindings::cron::parse_schedule(text);
    }
});
