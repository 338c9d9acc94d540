//! The registry's schema canonicalisation: minified text and deduplication identity.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fluxo::fuzzing::registry_canonical(data));
