//! Fuzzes component loading: any text a component file may hold goes through
//! the YAML loader and then the binding planner (metadata checks). Neither may
//! panic; bad input must come back as configuration errors.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let (components, _errors) =
        outrigger::config::load_str(Path::new("fuzz.yaml"), text, "fuzz-app");
    let _ = outrigger::bindings::plan(components);
});
