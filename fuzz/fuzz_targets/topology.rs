//! The topology parser and validator (`topology.toml`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fluxo::fuzzing::topology(data));
