//! JSON lines → Avro, as `fluxo produce` does: the first byte picks the schema, the rest is one
//! line of text. A value it accepts must encode and decode back.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fluxo::fuzzing::json_to_avro(data));
