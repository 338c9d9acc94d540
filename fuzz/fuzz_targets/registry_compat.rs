//! The registry's compatibility checker: two schema texts separated by a 0xff byte, each checked
//! as reader of the other.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fluxo::fuzzing::registry_compat(data));
